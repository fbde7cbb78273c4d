# etcd for the compose deployment's test cluster: Debian's etcd binary and
# the libraries it links, on an empty base (see build-images.sh).
FROM scratch
COPY rootfs/ /
USER 65532:65532
EXPOSE 2379 2380
ENTRYPOINT ["/usr/bin/etcd"]
