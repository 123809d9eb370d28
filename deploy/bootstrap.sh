#!/bin/sh
# MyOsicam agent bootstrap: installs, registers and starts the agent on an OScam server.
# Run as root, once per install; running it again (a fresh install token) replaces the agent's
# token and restarts it. The panel's installer renders the four values below and runs this over
# SSH; by hand, set them in the environment instead (MYOSICAM_PANEL_URL, MYOSICAM_PANEL_PUBKEY_PIN,
# MYOSICAM_PANEL_FINGERPRINT, MYOSICAM_OSCAM_DIRS, and MYOSICAM_RELEASE_KEY_ID when the panel has a
# release key) and pass the install token on stdin.
#
# Lines starting with "==> " name the step that begins; the installer shows them as progress.
set -eu

PANEL_URL='@PANEL_URL@'
PANEL_PUBKEY_PIN='@PANEL_PUBKEY_PIN@'
PANEL_FINGERPRINT='@PANEL_FINGERPRINT@'
OSCAM_DIRS='@OSCAM_DIRS@'
RELEASE_KEY_ID='@RELEASE_KEY_ID@'
INSTALL_TOKEN='@INSTALL_TOKEN@'

AGENT_USER=myosicam-agent
# The agent's home, owned by its user, so that it upgrades itself without root: versions/<v>/,
# `current` (what the start wrapper runs) and `previous` (what it falls back to).
AGENT_HOME=/var/lib/myosicam-agent
# The start wrapper the unit runs: root's, never replaced by an upgrade.
AGENT_START=/usr/local/lib/myosicam-agent/start
AGENT_BIN=/usr/local/bin/myosicam-agent
STATE_DIR=/etc/myosicam-agent
UNIT=/etc/systemd/system/myosicam-agent.service
SUDOERS=/etc/sudoers.d/myosicam-agent

# Whatever happens, this script (it holds the install token) and the work dir go.
WORK=$(mktemp -d /tmp/myosicam-bootstrap.XXXXXX)
cleanup() {
  rm -rf "$WORK"
  case "$0" in /tmp/myosicam-bootstrap*) rm -f "$0" ;; esac
}
trap cleanup EXIT
# A lost SSH connection ends the script by SIGHUP or SIGPIPE: exit through the cleanup then too.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

step() { printf '==> %s\n' "$1"; }
fail() {
  printf 'bootstrap failed: %s\n' "$1" >&2
  exit 1
}
unrendered() { case "$1" in @*@) return 0 ;; *) return 1 ;; esac; }

unrendered "$PANEL_URL" && PANEL_URL=${MYOSICAM_PANEL_URL:-}
unrendered "$PANEL_PUBKEY_PIN" && PANEL_PUBKEY_PIN=${MYOSICAM_PANEL_PUBKEY_PIN:-}
unrendered "$PANEL_FINGERPRINT" && PANEL_FINGERPRINT=${MYOSICAM_PANEL_FINGERPRINT:-}
unrendered "$OSCAM_DIRS" && OSCAM_DIRS=${MYOSICAM_OSCAM_DIRS:-}
unrendered "$RELEASE_KEY_ID" && RELEASE_KEY_ID=${MYOSICAM_RELEASE_KEY_ID:-}
if unrendered "$INSTALL_TOKEN"; then
  IFS= read -r INSTALL_TOKEN || true
fi
[ -n "$PANEL_URL" ] || fail "no panel URL (MYOSICAM_PANEL_URL)"
[ -n "$PANEL_PUBKEY_PIN" ] || fail "no panel key pin (MYOSICAM_PANEL_PUBKEY_PIN, sha256//<base64>)"
[ -n "$PANEL_FINGERPRINT" ] || fail "no panel certificate fingerprint (MYOSICAM_PANEL_FINGERPRINT)"
printf '%s' "$INSTALL_TOKEN" | grep -Eq '^[0-9a-f]{64}$' || fail "no install token: pass it on stdin (npx myosicam token create)"

step "check system"
[ "$(id -u)" = 0 ] || fail "run as root (this is the only step that needs it)"
[ -r /etc/os-release ] || fail "/etc/os-release is missing: only Debian 12+ and Ubuntu 20.04+ are supported"
OS_ID=$(. /etc/os-release && printf '%s' "${ID:-}")
OS_VERSION=$(. /etc/os-release && printf '%s' "${VERSION_ID:-0}")
OS_MAJOR=${OS_VERSION%%.*}
case "$OS_ID" in
  debian) [ "$OS_MAJOR" -ge 12 ] 2>/dev/null || fail "Debian $OS_VERSION is too old: Debian 12 or newer is supported" ;;
  ubuntu) [ "$OS_MAJOR" -ge 20 ] 2>/dev/null || fail "Ubuntu $OS_VERSION is too old: Ubuntu 20.04 or newer is supported" ;;
  *) fail "$OS_ID $OS_VERSION is not supported: Debian 12+ or Ubuntu 20.04+" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) ARCH=x64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) fail "the $(uname -m) architecture is not supported: x86_64 or aarch64" ;;
esac
# A host without systemd (a container, a test host) opts in to running the agent without a unit
# by creating /etc/myosicam-agent.no-systemd before the install.
if [ "${MYOSICAM_BOOTSTRAP_NO_SYSTEMD:-}" = 1 ] || [ -f /etc/myosicam-agent.no-systemd ]; then
  SYSTEMD=no
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  SYSTEMD=yes
else
  fail "systemd is not running on this host (no /run/systemd/system): the agent runs as a systemd service (on a host without systemd, create /etc/myosicam-agent.no-systemd and run the install again)"
fi
echo "$OS_ID $OS_VERSION, $ARCH, systemd: $SYSTEMD"

step "download agent"
command -v curl >/dev/null 2>&1 || {
  echo "curl is missing; installing it"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl >/dev/null || fail "cannot install curl"
}
# The panel's certificate may be self-signed: curl checks its public key against the pin instead.
curl -fsS --proto '=https' --insecure --pinnedpubkey "$PANEL_PUBKEY_PIN" --retry 3 --max-time 300 \
  -H "Authorization: Bearer $INSTALL_TOKEN" -o "$WORK/myosicam-agent" "$PANEL_URL/install/agent/linux-$ARCH" ||
  fail "downloading the agent from $PANEL_URL failed (is the panel reachable from here, and the token still valid?)"
chmod 0755 "$WORK/myosicam-agent"
"$WORK/myosicam-agent" --version >/dev/null || fail "the downloaded agent does not run on this host"
echo "agent $("$WORK/myosicam-agent" --version)"
# The release key the panel's uploads are signed with is pinned: an agent built to trust another
# key could never be upgraded from this panel.
if [ -n "$RELEASE_KEY_ID" ]; then
  AGENT_KEY=$("$WORK/myosicam-agent" release-key 2>/dev/null || echo none)
  [ "$AGENT_KEY" = "$RELEASE_KEY_ID" ] ||
    fail "the downloaded agent trusts release key $AGENT_KEY, but this panel's releases are signed with $RELEASE_KEY_ID: rebuild the agent (npm run build:agent -- --release-key <AGENT_RELEASE_PUBLIC_KEY_FILE>)"
  echo "agent trusts release key $AGENT_KEY, the panel's"
fi

step "create user"
if id "$AGENT_USER" >/dev/null 2>&1; then
  echo "user $AGENT_USER exists"
else
  useradd --system --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin "$AGENT_USER"
  echo "user $AGENT_USER created"
fi

step "install agent"
VERSION=$("$WORK/myosicam-agent" --version)
install -d -o "$AGENT_USER" -g "$AGENT_USER" -m 0755 "$AGENT_HOME" "$AGENT_HOME/versions" "$AGENT_HOME/versions/$VERSION"
install -o "$AGENT_USER" -g "$AGENT_USER" -m 0755 "$WORK/myosicam-agent" "$AGENT_HOME/versions/$VERSION/myosicam-agent"
# A re-run installs what the panel serves now, and ends any upgrade on trial.
rm -f "$AGENT_HOME/trial" "$AGENT_HOME/trial-starts" "$AGENT_HOME/rolled-back"
[ -L "$AGENT_HOME/current" ] && [ "$(readlink "$AGENT_HOME/current")" != "versions/$VERSION" ] &&
  ln -sfn "$(readlink "$AGENT_HOME/current")" "$AGENT_HOME/previous"
ln -sfn "versions/$VERSION" "$AGENT_HOME/current"
chown -h "$AGENT_USER:$AGENT_USER" "$AGENT_HOME/current" "$AGENT_HOME/previous" 2>/dev/null || true
# An install by an older bootstrap left a plain file here.
rm -f "$AGENT_BIN"
ln -s "$AGENT_HOME/current/myosicam-agent" "$AGENT_BIN"
install -d -o root -g root -m 0755 "$(dirname "$AGENT_START")"
# --- start wrapper (kept in this file so the bootstrap stays one file) ---
cat >"$WORK/start" <<'WRAPPER'
#!/bin/sh
# MyOsicam agent start wrapper: runs $MYOSICAM_AGENT_HOME/current/myosicam-agent. While a new
# version is on trial (the agent wrote `trial` before switching `current` to it), it counts the
# starts and watches for the new version to end the trial (after its first accepted heartbeat).
# When the new version exits on start 3 times, or has not ended its trial within
# MYOSICAM_AGENT_TRIAL_SECONDS (120), it switches `current` back to `previous` and leaves
# `rolled-back` with the reason for the previous version to report.
set -u
HOME_DIR=${MYOSICAM_AGENT_HOME:-/var/lib/myosicam-agent}
TRIAL_SECONDS=${MYOSICAM_AGENT_TRIAL_SECONDS:-120}
MAX_STARTS=3
export MYOSICAM_AGENT_HOME="$HOME_DIR"
cd "$HOME_DIR" || exit 1

value() { sed -n "s/^$1=//p" "$2" 2>/dev/null | head -n 1; }
say() { printf 'myosicam-agent-start: %s\n' "$1" >&2; }
rollback() {
  prev=$(readlink previous 2>/dev/null || true)
  if [ -z "$prev" ] || [ ! -x "$prev/myosicam-agent" ]; then
    say "the new version failed ($1) and there is no previous version to return to"
    rm -f trial trial-starts
    return 0
  fi
  { cat trial; printf 'reason=%s\n' "$1"; } >rolled-back.tmp && mv -f rolled-back.tmp rolled-back
  ln -sfn "$prev" .current.tmp && mv -fT .current.tmp current
  rm -f trial trial-starts
  say "rolled back to ${prev#versions/}: $1"
}
on_trial_too_long() {
  started=$(value started trial)
  [ $(($(date +%s) - ${started:-0})) -ge "$TRIAL_SECONDS" ]
}

if [ -f trial ]; then
  starts=$(($(cat trial-starts 2>/dev/null || echo 0) + 1))
  echo "$starts" >trial-starts
  if [ "$starts" -gt "$MAX_STARTS" ]; then
    rollback "it exited on start $MAX_STARTS times"
  elif on_trial_too_long; then
    rollback "it did not heartbeat within $TRIAL_SECONDS s"
  fi
fi
[ -f trial ] || exec "$HOME_DIR/current/myosicam-agent" "$@"

# On trial: run it as a child and watch the trial.
"$HOME_DIR/current/myosicam-agent" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
while kill -0 "$child" 2>/dev/null; do
  if [ ! -f trial ]; then
    wait "$child"
    exit $?
  fi
  if on_trial_too_long; then
    kill -TERM "$child" 2>/dev/null
    wait "$child"
    rollback "it did not heartbeat within $TRIAL_SECONDS s"
    exit 1
  fi
  sleep 1
done
wait "$child"
exit $?
WRAPPER
# --- end of start wrapper ---
install -o root -g root -m 0755 "$WORK/start" "$AGENT_START"
echo "agent $VERSION in $AGENT_HOME, started by $AGENT_START"
install -d -o "$AGENT_USER" -g "$AGENT_USER" -m 0700 "$STATE_DIR"
: >"$STATE_DIR/acl-dirs"
# The agent edits oscam.user and oscam.conf: it gets read and write on the named config dirs
# through ACLs (owners and modes stay as they are).
for dir in $OSCAM_DIRS; do
  [ -d "$dir" ] || fail "the OScam config dir $dir does not exist"
  if command -v setfacl >/dev/null 2>&1; then
    setfacl -R -m "u:$AGENT_USER:rwX" "$dir" && setfacl -d -m "u:$AGENT_USER:rwX" "$dir"
    printf '%s\n' "$dir" >>"$STATE_DIR/acl-dirs"
    echo "$AGENT_USER may read and write $dir"
  else
    echo "warning: setfacl is missing (apt-get install acl): give $AGENT_USER write access to $dir by hand"
  fi
done

step "install unit"
if [ "$SYSTEMD" = yes ]; then
  RW="$STATE_DIR $AGENT_HOME"
  for dir in $OSCAM_DIRS; do RW="$RW $dir"; done
  cat >"$WORK/unit" <<EOF
[Unit]
Description=MyOsicam agent: reports this host's OScam instances to the panel
Documentation=https://github.com/myosicam/myosicam/blob/main/docs/install-agent.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=$AGENT_USER
Group=$AGENT_USER
ExecStart=$AGENT_START run --state-dir $STATE_DIR
Restart=always
RestartSec=5
# Hardening. NoNewPrivileges stays off: it would stop the one sudo rule (systemctl start, stop,
# restart and status of the OScam units) that start/stop/restart commands need.
NoNewPrivileges=no
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=no
ReadWritePaths=$RW

[Install]
WantedBy=multi-user.target
EOF
  install -o root -g root -m 0644 "$WORK/unit" "$UNIT"
  echo "installed $UNIT"
else
  echo "no systemd: no unit (test mode)"
fi

step "sudoers"
SUDO_VERSION=$(sudo -V 2>/dev/null | sed -n 's/^Sudo version \([0-9]*\)\.\([0-9]*\)\.\([0-9]*\).*/\1 \2 \3/p' | head -n 1)
if ! command -v visudo >/dev/null 2>&1; then
  echo "warning: sudo is not installed: start, stop and restart commands will fail until it is (apt-get install sudo)"
else
  set -- $SUDO_VERSION
  if [ "${1:-0}" -gt 1 ] || { [ "${1:-0}" -eq 1 ] && { [ "${2:-0}" -gt 9 ] || { [ "${2:-0}" -eq 9 ] && [ "${3:-0}" -ge 10 ]; }; }; }; then
    # sudo 1.9.10+: one rule with an argument regex.
    printf '%s\n' "# MyOsicam agent: may start, stop, restart and query the OScam systemd units, and nothing else." \
      "$AGENT_USER ALL=(root) NOPASSWD: /usr/bin/systemctl ^(start|stop|restart|status) oscam(@[A-Za-z0-9_.-]{1,64})?\\.service\$" >"$WORK/sudoers"
  else
    # Older sudo has no regex: the units that exist now, each verb spelled out.
    printf '%s\n' "# MyOsicam agent: may start, stop, restart and query these OScam systemd units, and nothing else." >"$WORK/sudoers"
    UNITS=$(systemctl list-unit-files --no-legend 'oscam*.service' 2>/dev/null | awk '{print $1}' | grep -E '^oscam(@[A-Za-z0-9_.-]{1,64})?\.service$' || true)
    for unit in $UNITS; do
      for verb in start stop restart status; do
        printf '%s\n' "$AGENT_USER ALL=(root) NOPASSWD: /usr/bin/systemctl $verb $unit" >>"$WORK/sudoers"
      done
    done
    echo "sudo $SUDO_VERSION has no argument regex: the rule names the units found now ($UNITS); re-run the bootstrap after adding one"
  fi
  visudo -cf "$WORK/sudoers" >/dev/null || fail "visudo refused the sudoers rule; nothing was installed in /etc/sudoers.d"
  install -o root -g root -m 0440 "$WORK/sudoers" "$SUDOERS"
  echo "installed $SUDOERS"
fi

step "register"
DIR_ARGS=""
for dir in $OSCAM_DIRS; do DIR_ARGS="$DIR_ARGS --oscam-dir $dir"; done
# The token goes through stdin: never in a process's arguments.
# shellcheck disable=SC2086
printf '%s\n' "$INSTALL_TOKEN" | runuser -u "$AGENT_USER" -- "$AGENT_BIN" register --panel "$PANEL_URL" --pin "$PANEL_FINGERPRINT" \
  --token-stdin --state-dir "$STATE_DIR" $DIR_ARGS || fail "the panel refused the registration (see the line above)"

step "start"
if [ "$SYSTEMD" = yes ]; then
  systemctl daemon-reload
  systemctl enable myosicam-agent.service >/dev/null 2>&1
  # restart, not start: a re-run (token rotation) picks up the new token.
  systemctl restart myosicam-agent.service
  systemctl is-active --quiet myosicam-agent.service || fail "the agent service did not start: journalctl -u myosicam-agent"
  echo "myosicam-agent.service is running"
else
  # Without systemd the agent runs under a restart loop in a session of its own, as the unit's
  # Restart=always and RestartSec=5 would: its exit into an upgrade and a crash start it again
  # through the start wrapper (which falls back from a failing upgrade). The pid file names the
  # session, so a re-run or the uninstall stops the loop and the agent together.
  if [ -f /run/myosicam-agent.pid ]; then
    old=$(cat /run/myosicam-agent.pid)
    kill -- "-$old" 2>/dev/null || kill "$old" 2>/dev/null || true
  fi
  setsid runuser -u "$AGENT_USER" -- /bin/sh -c 'while :; do "$0" run --state-dir "$1"; sleep 5; done' "$AGENT_START" "$STATE_DIR" \
    >/var/log/myosicam-agent.log 2>&1 </dev/null &
  echo $! >/run/myosicam-agent.pid
  echo "agent started without systemd (session $!, restarted when it exits), logging to /var/log/myosicam-agent.log"
fi
echo "done"
