#!/bin/sh
# MyOsicam agent uninstall: removes everything the bootstrap installed — the service and its unit,
# the sudoers rule, the binary (every installed version and the start wrapper), the state directory (with the agent token), the ACLs it added on
# OScam config dirs and the myosicam-agent user. OScam and its files are left as they are.
# Revoke the agent on the panel too: npx myosicam agent revoke <server id>.
set -eu

AGENT_USER=myosicam-agent
STATE_DIR=/etc/myosicam-agent

[ "$(id -u)" = 0 ] || { echo "uninstall: run as root" >&2; exit 1; }

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now myosicam-agent.service >/dev/null 2>&1 || true
fi
if [ -f /run/myosicam-agent.pid ]; then
  # The bootstrap's restart loop and the agent share one session: stop them together.
  old=$(cat /run/myosicam-agent.pid)
  kill -- "-$old" 2>/dev/null || kill "$old" 2>/dev/null || true
  rm -f /run/myosicam-agent.pid
fi
if id "$AGENT_USER" >/dev/null 2>&1; then
  pkill -u "$AGENT_USER" 2>/dev/null || true
  # Give the agent 5 s to finish, then end it: userdel refuses a user with running processes.
  i=0
  while pgrep -u "$AGENT_USER" >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  pkill -KILL -u "$AGENT_USER" 2>/dev/null || true
fi
rm -f /etc/systemd/system/myosicam-agent.service
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
rm -f /etc/sudoers.d/myosicam-agent /usr/local/bin/myosicam-agent /var/log/myosicam-agent.log
if [ -f "$STATE_DIR/acl-dirs" ] && command -v setfacl >/dev/null 2>&1; then
  while IFS= read -r dir; do
    [ -d "$dir" ] || continue
    setfacl -R -x "u:$AGENT_USER" "$dir" 2>/dev/null || true
    setfacl -d -x "u:$AGENT_USER" "$dir" 2>/dev/null || true
  done <"$STATE_DIR/acl-dirs"
fi
rm -rf "$STATE_DIR" /var/lib/myosicam-agent /usr/local/lib/myosicam-agent
if id "$AGENT_USER" >/dev/null 2>&1; then userdel "$AGENT_USER"; fi
echo "the MyOsicam agent is removed from this host"
