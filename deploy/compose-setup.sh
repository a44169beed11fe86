#!/usr/bin/env bash
# docker-compose.yml's one-shot "pki" service (the Dockerfile's pilot-pki target): a CA,
# the broker's certificate, the broker accounts and the files each container reads, in
# the volumes mounted at /pki (the broker's /etc/mosquitto) and /broker-data. Runs once:
# a second "docker compose up" keeps what exists. Pilot/demo only; see README "Deploying".
set -euo pipefail
here=$(dirname "$0")/mosquitto
etc=${1:-/pki}
data=${2:-/broker-data}
mosquitto_uid=${MOSQUITTO_UID:-1883}   # the mosquitto user of the eclipse-mosquitto image
service_uid=${SERVICE_UID:-10001}      # the streamproc user of the service image

if [[ -f $etc/passwd ]]; then
  echo "pilot PKI and accounts exist in $etc; keeping them" >&2
  exit 0
fi
mkdir -p "$etc/certs" "$etc/conf.d" "$etc/secrets" "$data"
"$here/make-certs.sh" "$etc/certs" ca
"$here/make-certs.sh" "$etc/certs" server broker mosquitto
rm -f "$etc/certs/ca.key"   # nothing else is signed in the demo
cp "$here/mosquitto.conf" "$etc/mosquitto.conf"
cp "$here/ward.acl" "$etc/acl"

# account ROLE NAME [WARD]: a random password, kept in secrets/NAME.password for the
# container that logs in with it
account() {
  local secret=$etc/secrets/$2.password
  openssl rand -base64 24 | tr -d '\n' >"$secret"
  "$here/add-account.sh" --passwd "$etc/passwd" --acl "$etc/acl" "$@" <"$secret"
}
account streamproc streamproc
account gateway sim-icu1 icu1
account consumer nurse-icu1

chown "$mosquitto_uid:$mosquitto_uid" "$etc/passwd" "$etc/acl" "$etc/certs/broker.key" "$data"
chown -R "$service_uid:$service_uid" "$etc/secrets"
chmod 0700 "$etc/secrets"
echo "pilot PKI ready: CA $etc/certs/ca.crt, passwords in $etc/secrets/" >&2
