# Sourced by scripts/cluster.sh and scripts/docker-cluster.sh (set TLS_DIR first):
# whether a cluster's admin listeners speak TLS (decided at its first `up` with
# SLUICE_ADMIN_TLS=tls|mtls: TLS_DIR/ca.pem exists), and how curl reaches them.
admin_tls_on() { [[ -f "$TLS_DIR/ca.pem" ]]; }
admin_scheme() { if admin_tls_on; then echo https; else echo http; fi; }
# curl_tls : curl's TLS arguments for the admin API, one per line.
curl_tls() {
    admin_tls_on || return 0
    printf '%s\n' --cacert "$TLS_DIR/ca.pem"
    if [[ -f "$TLS_DIR/mtls" ]]; then
        printf '%s\n' --cert "$TLS_DIR/client.pem" --key "$TLS_DIR/client.key"
    fi
}
