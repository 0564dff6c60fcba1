#!/bin/bash
# Facts about a Linux host that an operator checks first: who it is, what it runs, how full
# /var is. Read-only. Paths go through $CLOUDOPS_ROOT so tests can run it in a sandbox.
set -u
root="${CLOUDOPS_ROOT:-}"

os_name="unknown"
if [ -r "$root/etc/os-release" ]; then
    # shellcheck disable=SC1091
    os_name="$(. "$root/etc/os-release" && printf '%s' "${PRETTY_NAME:-${NAME:-unknown}}")"
fi

echo "hostname: $(hostname 2>/dev/null || cat "$root/etc/hostname" 2>/dev/null || echo unknown)"
echo "os: $os_name"
echo "kernel: $(uname -r)"
echo "architecture: $(uname -m)"
echo "up since: $(uptime -s 2>/dev/null || echo unknown)"
var_free_kb="$(df -Pk "$root/var" 2>/dev/null | awk 'NR==2 {print $4}')"
if [ -n "$var_free_kb" ]; then
    echo "free in /var: $((var_free_kb / 1024 / 1024)) GB"
else
    echo "free in /var: unknown"
fi
echo "user: $(id -un 2>/dev/null || echo unknown)"
