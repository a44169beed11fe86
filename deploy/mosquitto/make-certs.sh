#!/usr/bin/env bash
# Certificates for a TEST or PILOT install of the ward broker: a private CA, server
# certificates for the brokers and client certificates for the services. For production,
# have the hospital's PKI issue them instead (same file names, same extensions).
#
#   make-certs.sh DIR ca                              # DIR/ca.crt, DIR/ca.key (once)
#   make-certs.sh DIR server NAME HOST_OR_IP...       # DIR/NAME.crt + .key, SAN = hosts
#   make-certs.sh DIR client NAME                     # DIR/NAME.crt + .key, CN = NAME
#
# Example for one ward gateway and the central broker:
#   make-certs.sh /etc/mosquitto/certs ca
#   make-certs.sh /etc/mosquitto/certs server broker gw-icu1.hospital.example 10.20.0.5
#   make-certs.sh /etc/mosquitto/certs server central mqtt-central.hospital.example
#   make-certs.sh /etc/mosquitto/certs client streamproc
#
# Keys are ECDSA P-256 (fast, accepted by Mosquitto, OpenSSL 3 and Python's ssl), written
# with mode 0600: give the broker's key to the mosquitto user (chgrp mosquitto, chmod 0640)
# and keep ca.key off the gateway once the certificates are issued.
# Environment: DAYS (validity, default 825 — the longest most TLS clients accept).
set -euo pipefail

usage() { sed -n '2,16p' "$0" >&2; exit 2; }
(($# >= 2)) || usage
dir=$1 kind=$2
shift 2
days=${DAYS:-825}
mkdir -p "$dir"
umask 077

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

make_ca() {
  if [[ -f $dir/ca.crt ]]; then
    echo "$dir/ca.crt exists; keeping it" >&2
    return
  fi
  new_key "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" \
    -subj "/O=streamproc pilot/CN=streamproc pilot CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt"
  chmod 0644 "$dir/ca.crt"
  echo "CA: $dir/ca.crt" >&2
}

# sign NAME EXTENSIONS: a key and a certificate for NAME, signed by the CA
sign() {
  local name=$1 extensions=$2
  [[ -f $dir/ca.key ]] || { echo "no $dir/ca.key: run '$0 $dir ca' first" >&2; exit 1; }
  [[ $name =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || { echo "bad name '$name': use A-Z a-z 0-9 _ . -" >&2; exit 2; }
  new_key "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "/O=streamproc pilot/CN=$name" -out "$dir/$name.csr"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -sha256 -days "$days" -extfile <(printf '%s\n' "$extensions") \
    -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr"
  chmod 0644 "$dir/$name.crt"
  echo "$name: $dir/$name.crt $dir/$name.key" >&2
}

subject_alt_names() {
  local entries=() host
  for host in "$@" localhost 127.0.0.1; do
    if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then entries+=("IP:$host"); else entries+=("DNS:$host"); fi
  done
  local IFS=,
  echo "${entries[*]}"
}

case $kind in
  ca) make_ca ;;
  server)
    (($# >= 2)) || usage
    name=$1
    shift
    sign "$name" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$(subject_alt_names "$@")"
    ;;
  client)
    (($# == 1)) || usage
    sign "$1" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    ;;
  *) usage ;;
esac
