#!/usr/bin/env bash
# Add (or replace) one broker account: its password in the password file and, for the
# named roles, its block in the ACL. Then reload the broker: systemctl reload mosquitto.
#
#   add-account.sh [--passwd FILE] [--acl FILE] device WARD/BED     # a bedside device
#   add-account.sh [...] gateway NAME WARD     # a monitor gateway or ADT feed for a ward
#   add-account.sh [...] streamproc NAME       # the processor (reads icu/#, writes alerts)
#   add-account.sh [...] consumer NAME         # dashboards, nurse call: read alerts, write acks
#   add-account.sh [...] bridge NAME WARD      # central broker only: a ward gateway's bridge
#   add-account.sh [...] remove NAME           # revoke: password and ACL block go
#
# The password is read from standard input (one line) when it is not a terminal; otherwise
# a random one is generated and printed once on standard output. It is never passed on a
# command line. Defaults: --passwd /etc/mosquitto/passwd --acl /etc/mosquitto/acl.
# Names: A-Z a-z 0-9 _ - (a device is WARD/BED); only device names contain "/".
set -euo pipefail

passwd_file=/etc/mosquitto/passwd
acl_file=/etc/mosquitto/acl
while [[ ${1:-} == --* ]]; do
  case $1 in
    --passwd) passwd_file=$2 ;;
    --acl) acl_file=$2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done

usage() { sed -n '2,16p' "$0" >&2; exit 2; }
(($# >= 2)) || usage
role=$1 name=$2 ward=${3:-}
segment='[A-Za-z0-9_-]{1,64}'

check_name() {  # check_name VALUE PATTERN WHAT
  [[ $1 =~ ^$2$ ]] || { echo "bad $3 '$1': use A-Z a-z 0-9 _ - (at most 64 characters)" >&2; exit 2; }
}

# acl_block ROLE NAME WARD: the ACL lines of a named account
acl_block() {
  case $1 in
    gateway) printf '%s\n' "topic write icu/$3/+/vitals" "topic write icu/$3/+/waveform/#" \
      "topic write icu/$3/+/context" ;;
    streamproc) printf '%s\n' "topic read icu/#" "topic write icu/+/+/alerts" \
      "topic write icu/+/+/status" "topic write streamproc/#" ;;
    consumer) printf '%s\n' "topic read icu/+/+/alerts" "topic read icu/+/+/status" \
      "topic read streamproc/+/state" "topic write icu/+/+/ack" ;;
    bridge) printf '%s\n' "topic write icu/$3/+/alerts" "topic write icu/$3/+/status" \
      "topic write streamproc/+/state" "topic read icu/$3/+/ack" ;;
  esac
}

remove_acl_block() {
  [[ -f $acl_file ]] || return 0
  local kept
  kept=$(awk -v start="# account $1" -v stop="# end of account $1" \
    '$0 == start {skip = 1} !skip {print} $0 == stop {skip = 0}' "$acl_file")
  printf '%s\n' "$kept" >"$acl_file"
}

read_password() {
  local password
  if [[ -t 0 ]]; then
    password=$(openssl rand -base64 24)
    echo "$password"
    echo "password for $name printed above: store it now, it is not kept in clear" >&2
  else
    IFS= read -r password || true
    [[ -n $password ]] || { echo "empty password on standard input" >&2; exit 2; }
  fi
  PASSWORD=$password
}

set_password() {
  local create=()
  [[ -f $passwd_file ]] || create=(-c)
  read_password
  printf '%s\n%s\n' "$PASSWORD" "$PASSWORD" | mosquitto_passwd "${create[@]}" "$passwd_file" "$name" >/dev/null
  chmod 0640 "$passwd_file"
  # Mosquitto reads the file after dropping to its own user: give it to that group.
  if getent group mosquitto >/dev/null && ! chgrp mosquitto "$passwd_file" 2>/dev/null; then
    echo "warning: could not give $passwd_file to group mosquitto; the broker must read it" >&2
  fi
}

case $role in
  device)
    check_name "$name" "$segment/$segment" "device name (WARD/BED)"
    set_password ;;
  gateway | bridge)
    check_name "$name" "$segment" "account name"
    check_name "$ward" "$segment" "ward"
    set_password ;;
  streamproc | consumer)
    check_name "$name" "$segment" "account name"
    set_password ;;
  remove)
    mosquitto_passwd -D "$passwd_file" "$name" 2>/dev/null || true
    remove_acl_block "$name"
    echo "removed $name; reload the broker" >&2
    exit 0 ;;
  *) usage ;;
esac

if [[ $role != device ]]; then
  remove_acl_block "$name"
  { printf '\n# account %s\nuser %s\n' "$name" "$name"; acl_block "$role" "$name" "$ward"
    printf '# end of account %s\n' "$name"; } >>"$acl_file"
fi
echo "$role account $name ready; reload the broker: systemctl reload mosquitto" >&2
