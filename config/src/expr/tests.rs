use super::*;

fn value(text: &str) -> Result<Expression, ExprError> {
    parse_value(text, &mut Context::default())
}

fn cond(text: &str, value: Option<Ty>) -> Result<Expression, ExprError> {
    parse_condition(
        text,
        &mut Context {
            value,
            ..Context::default()
        },
    )
}

#[test]
fn every_placeholder_and_function_compiles_with_its_type() {
    for (text, ty) in [
        ("[STATUS]", Ty::Num(Dim::Plain)),
        ("[RESPONSE_TIME]", Ty::Num(Dim::Duration)),
        ("[CERTIFICATE_EXPIRATION]", Ty::Num(Dim::Duration)),
        ("[NODES]", Ty::Num(Dim::Plain)),
        ("[BODY]", Ty::Text),
        ("[BODY].data[0].state", Ty::Json),
        ("[BODY][\"odd-key\"].x", Ty::Json),
        ("[METRIC].up", Ty::Series),
        (
            "[METRIC].x{a=\"1\", b!=\"2\", c=~\"3.*\", d!~\"4\"}",
            Ty::Series,
        ),
        ("len([BODY].items)", Ty::Num(Dim::Plain)),
        ("has([BODY].items)", Ty::Bool),
        ("sum([METRIC].x)", Ty::Num(Dim::Plain)),
        ("min([METRIC].x)", Ty::Num(Dim::Plain)),
        ("max([METRIC].x)", Ty::Num(Dim::Plain)),
        ("avg([METRIC].x)", Ty::Num(Dim::Plain)),
        ("count([METRIC].x)", Ty::Num(Dim::Plain)),
        ("rate(sum([METRIC].x))", Ty::Num(Dim::Plain)),
        ("rate([METRIC].x, 10m)", Ty::Num(Dim::Plain)),
        (
            "label([METRIC].build{component=\"pilot\"}, \"tag\")",
            Ty::Text,
        ),
        ("[METRIC].a / [METRIC].b * 100", Ty::Num(Dim::Plain)),
        ("-[STATUS] + 2", Ty::Num(Dim::Plain)),
        ("[BODY].state == pat(\"^(ok|ready)$\")", Ty::Bool),
        ("[STATUS] == 200 && ![BODY].draining || false", Ty::Bool),
    ] {
        let e = value(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(e.ty, ty, "{text}");
    }
}

#[test]
fn units_scale_to_seconds_and_bytes() {
    for (text, v, d) in [
        ("300ms", 0.3, Dim::Duration),
        ("30d", 30.0 * 86400.0, Dim::Duration),
        ("2KiB", 2048.0, Dim::Bytes),
        ("80%", 80.0, Dim::Percent),
        ("1.5e9", 1.5e9, Dim::Plain),
    ] {
        match value(text).unwrap().root {
            Node::Lit(Lit::Num(x, dim)) => {
                assert!((x - v).abs() < 1e-9, "{text}: {x}");
                assert_eq!(dim, d, "{text}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn short_conditions_compare_the_value() {
    let e = cond("> 300ms", Some(Ty::Num(Dim::Duration))).unwrap();
    assert!(matches!(e.root, Node::Cmp { op: CmpOp::Gt, .. }));
    assert!(cond("> 300ms", None).is_err());
}

#[test]
fn rate_slots_are_numbered_per_context() {
    let mut ctx = Context::default();
    parse_value("rate([METRIC].a) + rate([METRIC].b)", &mut ctx).unwrap();
    parse_value("rate([METRIC].c)", &mut ctx).unwrap();
    assert_eq!(ctx.slots, 3);
}

#[test]
fn bad_expressions_are_refused_at_their_column() {
    // (text, 1-based column, words the message must hold)
    for (text, col, words) in [
        ("", 1, "empty"),
        ("[STATUS] ==", 12, "expected a value"),
        ("[STATUS] = 200", 10, "to compare, write =="),
        (
            "[BODY].ok == true && [STATUS] = 200",
            31,
            "a single = does not compare",
        ),
        ("[STATUS] != \"x\"", 13, "cannot compare a number with text"),
        ("[FOO]", 1, "unknown placeholder [FOO]"),
        ("[BODY].", 8, "a field name"),
        ("[BODY][x]", 8, "an index"),
        ("[METRIC]", 9, "a . and a metric name"),
        ("[METRIC].x{a==\"1\"}", 13, "takes =, not =="),
        ("[METRIC].x{a=1}", 14, "a quoted label value"),
        ("[METRIC].x{a=~\"(\"}", 15, "not a regular expression"),
        ("[METRIC].x{a=\"1\"", 17, "a , or a closing }"),
        ("len(", 5, "expected a value"),
        ("len([STATUS])", 5, "len() takes"),
        ("foo([STATUS])", 1, "unknown function \"foo\""),
        ("ok", 1, "text goes in quotes"),
        ("sum([STATUS])", 5, "sum() takes"),
        ("rate([METRIC].x, 5)", 18, "window is a duration"),
        ("label([METRIC].x, version)", 19, "unexpected word"),
        ("label([METRIC].x)", 1, "takes a selector and a label name"),
        ("[BODY].a == pat(\"(\")", 17, "not a regular expression"),
        ("[BODY].a > pat(\"x\")", 10, "not >"),
        ("pat(\"x\") == [BODY].a", 1, "pat() goes right"),
        ("[STATUS] == 200 == 200", 17, "do not chain"),
        ("\"open", 1, "never closed"),
        ("[STATUS] & 1", 10, "write &&"),
        ("5parsecs", 1, "unknown unit"),
        ("[RESPONSE_TIME] > 300", 19, "e.g. 300ms"),
        ("[STATUS] && true", 1, "&& joins conditions"),
        ("(1 + 2", 7, "a closing )"),
        ("[STATUS] 200", 10, "expected an operator"),
        ("\"a\" + 1", 1, "arithmetic needs numbers"),
        (
            "[RESPONSE_TIME] + 1KiB",
            19,
            "cannot add a duration and a size",
        ),
        ("has([STATUS])", 5, "has() takes"),
        ("[BODY] > 5", 1, "compares numbers"),
        ("@", 1, "unexpected character"),
    ] {
        let e = value(text)
            .and_then(|v| {
                if v.ty == Ty::Pattern {
                    Ok(v)
                } else {
                    Err(ExprError::at(usize::MAX, format!("accepted as {:?}", v.ty)))
                }
            })
            .expect_err(text);
        assert_eq!(e.offset + 1, col, "{text:?}: {}", e.message);
        assert!(e.message.contains(words), "{text:?}: {}", e.message);
    }
}

#[test]
fn conditions_must_be_true_or_false() {
    let e = cond("[STATUS]", None).unwrap_err();
    assert!(e.message.contains("must be true or false"), "{}", e.message);
    // A JSON value may turn out true or false: judged when read.
    cond("[BODY].ready", None).unwrap();
    let e = parse_condition(
        "[STATUS] > 1",
        &mut Context {
            value: Some(Ty::Num(Dim::Plain)),
            no_answer: true,
            slots: 0,
        },
    )
    .unwrap_err();
    assert!(e.message.contains("cluster-wide"), "{}", e.message);
}

#[test]
fn metric_names_are_collected_once() {
    let e = value("sum([METRIC].a) + [METRIC].b{x=\"1\"} + max([METRIC].a)").unwrap();
    let mut names = Vec::new();
    e.root.metric_names(&mut names);
    assert_eq!(names, vec!["a".to_string(), "b".to_string()]);
}
