#!/bin/bash
# Install and enroll the ScaleFT / Okta Advanced Server Access agent (sftd, package
# scaleft-server-tools) on a RHEL-family or Debian-family host.
#
# Steps, in the vendor's order (token and config first, so that the agent's first start
# enrolls with them): enrollment token -> /etc/sft/sftd.yaml with AccessAddress = the primary
# IPv4 address -> package repository and its signing key -> package -> enable and start.
#
# Parameters (environment variables set by the flow's quoted header; none is the token):
#   SFT_TOKEN_SOURCE      where the enrollment token is read at run time: parameter-store (an
#                         SSM SecureString, read with the AWS CLI as the instance profile),
#                         secrets-manager, or file (a file the flow wrote for the local provider)
#   SFT_TOKEN_NAME        the parameter's name, the secret's id or the file's path
#   The token is written to /var/lib/sftd/enrollment.token (mode 600), never printed, never
#   passed on a command line or in an environment.
#   SFT_YUM_REPO_URL      yum baseurl        (default https://pkg.scaleft.com/rpm)
#   SFT_APT_REPO_URL      apt repository     (default https://pkg.scaleft.com/deb)
#   SFT_GPG_KEY_URL       repository signing key (default: the vendor's key for the family)
#
# Exit codes: 0 installed; 2 refused before anything was changed; 1 failed part-way.
# The last line of stdout is SFT_ACTION_RESULT=installed or SFT_ACTION_RESULT=failed:<reason>.
# Absolute paths go through $CLOUDOPS_ROOT (empty on a real server) so tests run it in a sandbox.
set -uo pipefail
umask 077 # anything this script creates is private unless it is made public on purpose

# cloudops-include: change_folder.sh
# cloudops-include: sft_token.sh
root="${CLOUDOPS_ROOT:-}"
package="scaleft-server-tools"
script_name="sft_install"
keyring_path="/usr/share/keyrings/scaleft-archive-keyring.gpg"

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

# The URLs land in a repository file, one per line: a line break or quote could add options.
check_https_url() {
    case "$2" in
    https://*[[:space:][:cntrl:]\"\'\\]* | https://) ;;
    https://*) return 0 ;;
    esac
    refuse invalid_parameter "$1 must be an https:// URL without spaces, quotes or line \
breaks. Nothing was changed."
}

# A directory other users may read (apt reads keyrings as the unprivileged _apt user).
make_public_dir() {
    (umask 022 && mkdir -p "$1")
}

# Move a finished temporary file into place as a world-readable file.
publish_file() {
    chmod 644 "$1" && mv -f "$1" "$2"
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

add_yum_repository() {
    local tmp
    make_public_dir "$root/etc/yum.repos.d" || return 1
    tmp="$(mktemp "$root/etc/yum.repos.d/.scaleft.repo.XXXXXX")" || return 1
    cat >"$tmp" <<EOF || return 1
[scaleft]
name=ScaleFT / Okta Advanced Server Access server tools
baseurl=$yum_repo_url
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=$gpg_key_url
EOF
    publish_file "$tmp" "$root/etc/yum.repos.d/scaleft.repo" && rpm --import "$gpg_key_url"
}

add_apt_repository() {
    local keyring="$root$keyring_path" list_dir="$root/etc/apt/sources.list.d" tmp
    make_public_dir "${keyring%/*}" && make_public_dir "$list_dir" || return 1
    tmp="$(mktemp "$keyring.XXXXXX")" || return 1
    if ! curl -fsSL --proto '=https' "$gpg_key_url" | gpg --batch --yes --dearmor >"$tmp" ||
        ! publish_file "$tmp" "$keyring"; then
        rm -f "$tmp"
        return 1
    fi
    tmp="$(mktemp "$list_dir/.scaleft.list.XXXXXX")" || return 1
    printf 'deb [signed-by=%s] %s %s main\n' "$keyring_path" "$apt_repo_url" "$codename" \
        >"$tmp" && publish_file "$tmp" "$list_dir/scaleft.list"
}

install_package() {
    if [ "$family" = "rpm" ]; then
        local manager=yum
        command -v dnf >/dev/null 2>&1 && manager=dnf
        "$manager" -y -q install "$package"
    else
        # Refresh only this repository: an unrelated broken source must not stop the fix.
        apt-get update -qq -o Dir::Etc::sourcelist=sources.list.d/scaleft.list \
            -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$package"
    fi
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

distro_id="$(os_release_value ID)"
case " $distro_id $(os_release_value ID_LIKE) " in
*" debian "* | *" ubuntu "*) family="deb" ;;
*" rhel "* | *" fedora "* | *" centos "* | *" amzn "*) family="rpm" ;;
*)
    refuse unsupported_distribution "distribution '${distro_id:-unknown}' (from /etc/os-release) \
is neither RHEL-family nor Debian-family; install the agent by hand. Nothing was changed."
    ;;
esac

codename=""
if [ "$family" = "deb" ]; then
    codename="$(os_release_value VERSION_CODENAME)"
    [ -n "$codename" ] || codename="$(os_release_value UBUNTU_CODENAME)"
    if [[ ! "$codename" =~ ^[a-z0-9][a-z0-9.-]*$ ]]; then
        refuse no_release_codename "/etc/os-release has no usable VERSION_CODENAME or \
UBUNTU_CODENAME ('$codename'), so the repository line for this release cannot be written. \
Nothing was changed."
    fi
fi

if ! access_address="$(primary_ipv4)"; then
    refuse no_primary_ipv4 "no primary IPv4 address was found (ip -4 route get, hostname -I); \
sftd.yaml needs it as AccessAddress. Check the network configuration. Nothing was changed."
fi

yum_repo_url="${SFT_YUM_REPO_URL:-https://pkg.scaleft.com/rpm}"
apt_repo_url="${SFT_APT_REPO_URL:-https://pkg.scaleft.com/deb}"
if [ "$family" = "rpm" ]; then
    gpg_key_url="${SFT_GPG_KEY_URL:-https://dist.scaleft.com/pki/scaleft_rpm_key.asc}"
    check_https_url SFT_YUM_REPO_URL "$yum_repo_url"
else
    gpg_key_url="${SFT_GPG_KEY_URL:-https://dist.scaleft.com/pki/scaleft_deb_key.asc}"
    check_https_url SFT_APT_REPO_URL "$apt_repo_url"
fi
check_https_url SFT_GPG_KEY_URL "$gpg_key_url"

# --- changes ----------------------------------------------------------------------------------
echo "$script_name: ${distro_id} (${family}${codename:+, $codename}), AccessAddress $access_address"

write_enrollment_token ||
    fail token_write_failed "could not write $root/var/lib/sftd/enrollment.token."
write_agent_config "$access_address" ||
    fail config_write_failed "could not write $root/etc/sft/sftd.yaml."

if [ "$family" = "rpm" ]; then
    add_yum_repository || fail repository_setup_failed "could not add the yum repository \
$yum_repo_url or import its key $gpg_key_url; check that the host reaches them."
else
    add_apt_repository || fail repository_setup_failed "could not add the apt repository \
$apt_repo_url ($codename) or fetch its key $gpg_key_url; check that the host reaches them."
fi

install_package || fail package_install_failed "installing $package failed; see the package \
manager's messages above."

systemctl daemon-reload || fail service_start_failed "systemctl daemon-reload failed."
systemctl enable sftd || fail service_start_failed "could not enable the sftd service."
if ! { systemctl restart sftd && systemctl is-active --quiet sftd; }; then
    fail service_start_failed "sftd did not start; see 'journalctl -u sftd' on the host."
fi

echo "$script_name: sftd installed, enabled and started"
echo "SFT_ACTION_RESULT=installed"
