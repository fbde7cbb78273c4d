//! Property tests of the parsers that read outside input: the
//! configuration file, Prometheus text from a cluster, and spill segments
//! from disk. Whatever the input: no panic, and a clear error or a result
//! that is true to the input.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use dbmon_collector::Registry;
use dbmon_collector::prom::Metrics;
use dbmon_collector::spill::read_segment;
use dbmon_config::Config;
use dbmon_proto::Report;
use proptest::prelude::*;
use prost::Message;
use std::path::Path;

const EXAMPLE: &str = include_str!("../../deploy/dbmon.example.yaml");
const VARS: &str = include_str!("fixtures/cockroachdb/status-vars.txt");

/// Parses `text` as a configuration: fine, or errors that each say where
/// and what.
fn config_holds(text: &str) -> Result<(), TestCaseError> {
    if let Err(errors) = Config::parse(text, Path::new("t.yaml"), &Registry) {
        prop_assert!(!errors.0.is_empty());
        let lines = text.lines().count() as u64 + 1;
        for e in &errors.0 {
            prop_assert!(!e.message.is_empty());
            prop_assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
        }
    }
    Ok(())
}

/// `text` with edits at char boundaries: (where, what, how) with how 0
/// delete, 1 insert, 2 replace.
fn edited(text: &str, edits: &[(usize, char, u8)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for &(at, c, how) in edits {
        if chars.is_empty() {
            chars.push(c);
            continue;
        }
        let at = at % chars.len();
        match how % 3 {
            0 => {
                chars.remove(at);
            }
            1 => chars.insert(at, c),
            _ => chars[at] = c,
        }
    }
    chars.into_iter().collect()
}

fn yamlish() -> impl Strategy<Value = char> {
    prop_oneof![
        Just(':'),
        Just('-'),
        Just(' '),
        Just('\n'),
        Just('{'),
        Just('}'),
        Just('['),
        Just(']'),
        Just('"'),
        Just('\''),
        Just('#'),
        Just('&'),
        Just('*'),
        Just('!'),
        Just('|'),
        Just('\t'),
        any::<char>(),
    ]
}

fn segment(reports: &[Report]) -> Vec<u8> {
    // The spill's record format: length (u32 LE), CRC-32 of the payload
    // (u32 LE), the protobuf payload.
    let mut out = Vec::new();
    for r in reports {
        let payload = r.encode_to_vec();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_is_a_configuration_or_located_errors(text in "\\PC{0,300}") {
        config_holds(&text)?;
    }

    #[test]
    fn the_shipped_example_edited_anywhere(edits in prop::collection::vec((any::<usize>(), yamlish(), any::<u8>()), 1..6)) {
        config_holds(&edited(EXAMPLE, &edits))?;
    }

    #[test]
    fn prometheus_text_edited_anywhere(edits in prop::collection::vec((any::<usize>(), yamlish(), any::<u8>()), 1..6), cut in 0usize..4000) {
        let text = edited(&VARS[..VARS.len().min(cut + 2000)], &edits);
        let _ = Metrics::parse(&text);
        let _ = Metrics::parse_only(&text, &["liveness_livenodes", "ranges_unavailable", "sys_uptime"]);
    }

    #[test]
    fn any_bytes_as_prometheus_text(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Metrics::parse(&text);
    }

    #[test]
    fn a_damaged_segment_yields_a_prefix_of_what_was_written(
        n in 1usize..20,
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let reports: Vec<Report> = (0..n as u64)
            .map(|seq| Report { cluster: "c".into(), node: format!("n{seq}"), check: "up".into(), seq, message: "m".repeat(seq as usize), ..Default::default() })
            .collect();
        let mut bytes = segment(&reports);
        for (at, x) in &flips {
            let at = at % bytes.len();
            bytes[at] ^= x | 1;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0000000001.seg");
        std::fs::write(&path, &bytes).unwrap();
        let (read, problem) = read_segment(&path).unwrap();
        prop_assert!(read.len() <= reports.len());
        prop_assert_eq!(&read[..], &reports[..read.len()], "never a report that was not written, in order");
        if problem.is_none() {
            // Nothing said wrong: every byte was a good record.
            prop_assert_eq!(segment(&read).len(), bytes.len());
        }
    }
}
