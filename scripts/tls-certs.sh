#!/usr/bin/env bash
# A private CA and one certificate per name, for TLS between nodes (node.admin_tls)
# and a client certificate for the admin CLI under mutual TLS.
#   scripts/tls-certs.sh DIR NAME...     e.g. scripts/tls-certs.sh data/tls node1 node2 node3
# Writes DIR/ca.pem (+ ca.key), DIR/NAME.pem + DIR/NAME.key for each NAME (SANs:
# NAME, localhost, 127.0.0.1 and $TLS_EXTRA_SANS, e.g. "DNS:sluice-1,IP:10.0.0.2"),
# and DIR/client.pem + DIR/client.key. Keys are P-256; certificates last 825 days.
# An existing CA in DIR is reused, so nodes added later share it.
set -euo pipefail
dir="${1:?usage: scripts/tls-certs.sh DIR NAME...}"
shift
mkdir -p "$dir"
cd "$dir"
if [[ ! -f ca.pem || ! -f ca.key ]]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout ca.key -out ca.pem -days 3650 -subj "/CN=sluice cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi
issue() { # name, extended key usage, SANs
  local name="$1" eku="$2" sans="$3"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$eku" "$sans" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out "$name.pem" -days 825 -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  chmod 600 "$name.key"
}
for name in "$@"; do
  sans="DNS:$name,DNS:localhost,IP:127.0.0.1${TLS_EXTRA_SANS:+,$TLS_EXTRA_SANS}"
  # Nodes are servers (admin listener) and clients (calls to peers).
  issue "$name" serverAuth,clientAuth "$sans"
done
issue client clientAuth "DNS:client"
chmod 600 ca.key
echo "wrote $(pwd): ca.pem, $* and client certificates"
