#!/bin/bash
# Reset the ScaleFT / Okta Advanced Server Access agent (sftd) so that it enrolls again: stop
# it, delete its device token (its enrollment), write a fresh enrollment token and sftd.yaml
# (AccessAddress = the primary IPv4 address), enable and start it.
#
# Parameters (environment variables set by the flow's quoted header; none is the token):
#   SFT_TOKEN_SOURCE      where the enrollment token is read at run time: parameter-store (an
#                         SSM SecureString, read with the AWS CLI as the instance profile),
#                         secrets-manager, or file (a file the flow wrote for the local provider)
#   SFT_TOKEN_NAME        the parameter's name, the secret's id or the file's path
#   The token is written to /var/lib/sftd/enrollment.token (mode 600), never printed, never
#   passed on a command line or in an environment.
#
# Exit codes: 0 reset; 2 refused before anything was changed (no token, agent not installed,
# no systemd, no primary IPv4 address); 1 failed part-way.
# The last line of stdout is SFT_ACTION_RESULT=reset or SFT_ACTION_RESULT=failed:<reason>.
# Absolute paths go through $CLOUDOPS_ROOT (empty on a real server) so tests run it in a sandbox.
set -uo pipefail
umask 077 # anything this script creates is private unless it is made public on purpose

# cloudops-include: change_folder.sh
# cloudops-include: sft_token.sh
root="${CLOUDOPS_ROOT:-}"
package="scaleft-server-tools"
script_name="sft_reset"

token_source="${SFT_TOKEN_SOURCE:-}"
token_name="${SFT_TOKEN_NAME:-}"
enrollment_token="" # read by check_token_source; kept in this shell variable only

# Exit 2: nothing on the host was changed.
refuse() {
    printf '%s: %s\n' "$script_name" "$2" >&2
    printf 'SFT_ACTION_RESULT=failed:%s\n' "$1"
    exit 2
}

# Exit 1: some changes were made before this step failed.
fail() {
    printf '%s: %s\n' "$script_name" "$2" >&2
    printf 'SFT_ACTION_RESULT=failed:%s\n' "$1"
    exit 1
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

# The address clients reach this host on. A route lookup sends no packet: it names the source
# address the kernel would use towards the internet, which is the primary interface's.
primary_ipv4() {
    local route addr addrs=()
    route="$(ip -4 route get 1.1.1.1 2>/dev/null)" || route=""
    if [[ "$route" =~ [[:space:]]src[[:space:]]+([0-9]{1,3}(\.[0-9]{1,3}){3}) ]]; then
        printf '%s' "${BASH_REMATCH[1]}"
        return 0
    fi
    read -r -a addrs <<<"$(hostname -I 2>/dev/null)"
    for addr in "${addrs[@]}"; do
        if [[ "$addr" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ && "$addr" != 127.* ]]; then
            printf '%s' "$addr"
            return 0
        fi
    done
    return 1
}

write_enrollment_token() {
    local dir="$root/var/lib/sftd" tmp
    mkdir -p "$dir" || return 1
    tmp="$(mktemp "$dir/.enrollment.token.XXXXXX")" || return 1
    # printf is a shell builtin: the token is never an argument of a process that ps shows.
    if printf '%s\n' "$enrollment_token" >"$tmp" && chmod 600 "$tmp" &&
        mv -f "$tmp" "$dir/enrollment.token"; then
        return 0
    fi
    rm -f "$tmp"
    return 1
}

# Rewrite sftd.yaml with the given AccessAddress, keeping every other setting a team made.
write_agent_config() {
    local address="$1" dir="$root/etc/sft" tmp
    (umask 022 && mkdir -p "$dir") || return 1
    tmp="$(mktemp "$dir/.sftd.yaml.XXXXXX")" || return 1
    if {
        if [ -f "$dir/sftd.yaml" ]; then
            grep -v -E '^[[:space:]]*AccessAddress[[:space:]]*:' "$dir/sftd.yaml" || true
        else
            printf -- '---\n'
        fi
        printf 'AccessAddress: "%s"\n' "$address"
    } >"$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$dir/sftd.yaml"; then
        return 0
    fi
    rm -f "$tmp"
    return 1
}

# --- checks: every refusal happens here, before the host is touched -------------------------
check_token_source
check_enrollment_token
# The token and the configuration go in folders only root may change (see the library).
for sft_dir in /var/lib/sftd /etc/sft; do
    if ! dir_problem="$(cloudops_workdir_problem "$root" "$sft_dir" "$sft_dir")"; then
        refuse unsafe_directory "$dir_problem. Nothing was changed."
    fi
done
if ! command -v systemctl >/dev/null 2>&1; then
    refuse no_systemd "systemctl was not found; this script manages sftd through systemd only. \
Nothing was changed."
fi
if [ "$(agent_install_type)" = "none" ]; then
    refuse not_installed "the agent ($package) is not installed; run the install action \
instead. Nothing was changed."
fi
if ! access_address="$(primary_ipv4)"; then
    refuse no_primary_ipv4 "no primary IPv4 address was found (ip -4 route get, hostname -I); \
sftd.yaml needs it as AccessAddress. Check the network configuration. Nothing was changed."
fi

# --- changes ----------------------------------------------------------------------------------
echo "$script_name: stopping sftd, AccessAddress $access_address"
systemctl stop sftd || fail stop_failed "could not stop the sftd service."

# The device token is the host's enrollment: without it the agent enrolls again on start.
rm -f "$root/var/lib/sftd/device.token" ||
    fail device_token_delete_failed "could not delete $root/var/lib/sftd/device.token."
write_enrollment_token ||
    fail token_write_failed "could not write $root/var/lib/sftd/enrollment.token."
write_agent_config "$access_address" ||
    fail config_write_failed "could not write $root/etc/sft/sftd.yaml."

# Enabled as well: an agent found stopped is often one that was disabled and would stay
# stopped after the next reboot.
systemctl enable sftd || fail service_start_failed "could not enable the sftd service."
if ! { systemctl start sftd && systemctl is-active --quiet sftd; }; then
    fail service_start_failed "sftd did not start; see 'journalctl -u sftd' on the host."
fi

echo "$script_name: device token deleted, enrollment token and sftd.yaml rewritten, sftd started"
echo "SFT_ACTION_RESULT=reset"
