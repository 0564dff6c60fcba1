#!/bin/bash
# ScaleFT / Okta Advanced Server Access agent (sftd): is it installed, running and enrolled?
# Read-only. Prints one KEY=value marker per fact for flows.parsers.parse_sft_detection:
#   SFT_PLATFORM=linux
#   SFT_INSTALLED=yes|no
#   SFT_TYPE=rpm|deb|binary|none        how the agent got onto the host
#   SFT_STATUS=running|stopped|not_installed|unknown
#   SFT_ENROLLMENT_TOKEN=exists|missing  /var/lib/sftd/enrollment.token (never its content)
#   SFT_DEVICE_TOKEN=exists|missing      /var/lib/sftd/device.token: the host is enrolled
#   SFT_CONFIG=exists|missing            /etc/sft/sftd.yaml
#   LINUX_DISTRO=<ID> <VERSION_ID>       from /etc/os-release
#   SFT_HOSTNAME=<name>                  the host's name, for the report
# Absolute paths go through $CLOUDOPS_ROOT (empty on a real server) so tests run it in a sandbox.
set -u
root="${CLOUDOPS_ROOT:-}"
package="scaleft-server-tools"

# The value of one KEY in os-release, without its quotes. Read, never sourced: the file is
# data, and sourcing it would run whatever it contains.
os_release_value() {
    local key="$1" line value
    [ -r "$root/etc/os-release" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ "$line" == "$key="* ]]; then
            value="${line#*=}"
            value="${value#[\"\']}"
            value="${value%[\"\']}"
            printf '%s' "$value"
            return 0
        fi
    done <"$root/etc/os-release"
}

file_marker() {
    if [ -f "$1" ]; then echo exists; else echo missing; fi
}

# How the agent got onto the host: its package, else a bare binary, else "none".
agent_install_type() {
    if command -v rpm >/dev/null 2>&1 && rpm -q --quiet "$package" 2>/dev/null; then
        echo rpm
    elif command -v dpkg-query >/dev/null 2>&1 &&
        [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ]; then
        echo deb
    elif [ -x "$root/usr/sbin/sftd" ]; then
        echo binary
    else
        echo none
    fi
}

agent_type="$(agent_install_type)"
if [ "$agent_type" = "none" ]; then
    installed="no"
    status="not_installed"
else
    installed="yes"
    if ! command -v systemctl >/dev/null 2>&1; then
        status="unknown"
    elif systemctl is-active --quiet sftd 2>/dev/null; then
        status="running"
    else
        status="stopped"
    fi
fi

distro_id="$(os_release_value ID)"
distro_version="$(os_release_value VERSION_ID)"
distro="${distro_id:-unknown}${distro_version:+ $distro_version}"

echo "SFT_PLATFORM=linux"
echo "SFT_INSTALLED=$installed"
echo "SFT_TYPE=$agent_type"
echo "SFT_STATUS=$status"
echo "SFT_ENROLLMENT_TOKEN=$(file_marker "$root/var/lib/sftd/enrollment.token")"
echo "SFT_DEVICE_TOKEN=$(file_marker "$root/var/lib/sftd/device.token")"
echo "SFT_CONFIG=$(file_marker "$root/etc/sft/sftd.yaml")"
echo "LINUX_DISTRO=$distro"
echo "SFT_HOSTNAME=$(uname -n)"
