#!/usr/bin/env bash
# The local Samba AD DC for the tests and the embedded mode (Debian bookworm, Samba 4.17).
#
#   samba_dc.sh install                  install Debian's AD DC packages when missing
#   samba_dc.sh provision DIR            provision a domain into DIR (Windows Server 2016 schema)
#   samba_dc.sh start DIR                start the DC provisioned in DIR on loopback, wait for LDAP;
#                                        writes DIR/etc/krb5-client.conf (KRB5_CONFIG for Kerberos binds)
#   samba_dc.sh stop DIR                 stop it by the pid in DIR/run/samba.pid
#   samba_dc.sh status DIR               exit 0 when running and answering LDAP
#   samba_dc.sh clone SRC DST            copy a stopped, provisioned DC directory and fix its paths
#
# Everything lives under DIR; nothing is written to /etc/samba. Must run as root.
# Samba's Python modules live in Debian's /usr/bin/python3, not in the project's virtualenv.
set -euo pipefail

CMD=${1:?usage: samba_dc.sh install|provision|start|stop|status|clone}
DIR=$(realpath -m "${2:-.}")
REALM=${E2AD_DC_REALM:-E2AD.TEST}
DOMAIN=${E2AD_DC_DOMAIN:-E2AD}
HOST=${E2AD_DC_HOSTNAME:-dc1}
PASS=${E2AD_DC_ADMIN_PASSWORD:-'Passw0rd!Str0ng#2024'}
WAIT=${E2AD_DC_WAIT:-60}
CONF="$DIR/etc/smb.conf"
PIDFILE="$DIR/run/samba.pid"
BASEDN=$(echo "$REALM" | tr 'A-Z' 'a-z' | sed 's/^/DC=/; s/\./,DC=/g')

log() { echo "[samba-dc] $*" >&2; }

install_pkgs() {
  if dpkg -s samba-ad-dc samba-ad-provision samba-dsdb-modules ldb-tools >/dev/null 2>&1; then return; fi
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then   # keep dpkg from starting Debian's own samba services
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  log "installing Debian's Samba AD DC packages"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    samba samba-ad-dc samba-ad-provision samba-dsdb-modules winbind krb5-user ldb-tools >&2
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

provision() {
  [ -f "$DIR/private/sam.ldb" ] && return
  log "provisioning $REALM into $DIR (Windows Server 2016 schema)"
  mkdir -p "$DIR/etc" "$DIR/run" "$DIR/log"
  : > "$DIR/etc/empty.conf"        # do not inherit Debian's /etc/samba/smb.conf
  # Samba 4.17 ships the Windows Server 2016 schema files (objectVersion 87, which has
  # msDS-ExternalDirectoryObjectId) but offers only up to 2012_R2 on the command line,
  # so provision through samba-tool's own code with the 2016 schema registered.
  /usr/bin/python3 - domain provision -s "$DIR/etc/empty.conf" --targetdir="$DIR" \
    --realm="$REALM" --domain="$DOMAIN" --host-name="$HOST" --server-role=dc \
    --dns-backend=NONE --use-rfc2307 --adminpass="$PASS" --backend-store=tdb \
    --option="interfaces=lo" --option="bind interfaces only=yes" \
    --option="ldap server require strong auth=no" \
    --option="log file=$DIR/log/log.%m" --option="pid directory=$DIR/run" \
    --option="ncalrpc dir=$DIR/run/ncalrpc" --option="winbindd socket directory=$DIR/run/winbindd" \
    --option="ntp signd socket directory=$DIR/run/ntp_signd" --option="usershare path=$DIR/run/usershares" \
    --option="load printers=no" --option="printing=bsd" --option="printcap name=/dev/null" \
    --option="disable spoolss=yes" --base-schema=2016 >&2 <<'PYEOF'
import sys
import samba.schema
samba.schema.Schema.base_schemas["2016"] = ("AD_DS_Attributes__Windows_Server_2016.ldf",
                                           "AD_DS_Classes__Windows_Server_2016.ldf", 87)
from samba.netcmd import domain
for option in domain.cmd_domain_provision.takes_options:
    if option.get_opt_string() == "--base-schema":
        option.choices = list(option.choices) + ["2016"]
from samba.netcmd.main import cmd_sambatool
cmd = cmd_sambatool()
try:
    rv = cmd._run("samba-tool", *sys.argv[1:])
except SystemExit as e:
    rv = e.code
except Exception as e:
    cmd.show_command_error(e); rv = 1
sys.exit(rv)
PYEOF
  # LDAP, CLDAP and Kerberos only: the writer needs nothing else, and it halves the memory.
  sed -i "s/^\(\s*\)server services = .*/\1server services = ldap, cldap, kdc/" "$CONF"
  local kv k    # provision drops some --option values; make sure these are there
  for kv in "ldap server require strong auth = no" "load printers = no" "printing = bsd"; do
    k=${kv%% = *}
    grep -qiE "^\s*$k\s*=" "$CONF" || sed -i "/^\[global\]/a\\\t$kv" "$CONF"
  done
  samba_spnupdate -s "$CONF" >&2     # ldap/<host> SPNs for Kerberos binds (normally the dnsupdate service)
}

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local p; p=$(tr -dc '0-9' < "$PIDFILE")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && [ "$(cut -c1-5 /proc/$p/comm 2>/dev/null)" = samba ] && echo "$p"
}

ldap_up() {  # anonymous rootDSE, then an authenticated base search
  ldbsearch --configfile="$CONF" -H ldap://127.0.0.1 -b "" --scope=base defaultNamingContext 2>/dev/null \
    | grep -q "^defaultNamingContext" &&
  ldbsearch --configfile="$CONF" -H ldap://127.0.0.1 --use-kerberos=off -U "Administrator%$PASS" \
    -b "$BASEDN" --scope=base dn 2>/dev/null | grep -q "^dn: "
}

client_krb5_conf() {  # for Kerberos binds to this DC: its KDC on loopback, no DNS look-ups
  local realm_lower; realm_lower=$(echo "$REALM" | tr 'A-Z' 'a-z')
  cat > "$DIR/etc/krb5-client.conf" <<EOF
[libdefaults]
	default_realm = $REALM
	dns_lookup_realm = false
	dns_lookup_kdc = false
	rdns = false
	dns_canonicalize_hostname = false
[realms]
	$REALM = {
		kdc = 127.0.0.1
	}
[domain_realm]
	.$realm_lower = $REALM
EOF
}

start() {
  client_krb5_conf   # also for DCs provisioned before the file existed, and when already running
  if p=$(running_pid); then log "already running (pid $p)"; return; fi
  samba -D -M prefork -s "$CONF"
  local i=0
  until ldap_up; do
    i=$((i + 1)); sleep 0.1
    if [ $i -ge $((WAIT * 10)) ]; then log "LDAP did not answer in ${WAIT}s; see $DIR/log"; stop; exit 1; fi
  done
  log "LDAP answers (pid $(running_pid))"
}

stop() {
  local p
  if ! p=$(running_pid); then rm -f "$PIDFILE"; return 0; fi
  kill -TERM "$p"
  for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  # samba -D leads its own process group: reap its children only
  kill -KILL -- "-$p" 2>/dev/null || true
  rm -f "$PIDFILE"
  log "stopped (pid $p)"
}

case "$CMD" in
  install) install_pkgs ;;
  provision) install_pkgs; provision ;;
  start) start ;;
  stop) stop ;;
  status) running_pid >/dev/null && ldap_up ;;
  clone)
    DST=$(realpath -m "${3:?usage: samba_dc.sh clone SRC DST}")
    [ -f "$DIR/private/sam.ldb" ] || { log "$DIR is not a provisioned DC directory"; exit 1; }
    if running_pid >/dev/null; then log "stop $DIR before cloning it"; exit 1; fi
    rm -rf -- "$DST"
    cp -a -- "$DIR" "$DST"
    rm -f "$DST/run/samba.pid"
    sed -i "s|$DIR|$DST|g" "$DST/etc/smb.conf" ;;
  *) log "unknown command $CMD"; exit 2 ;;
esac
