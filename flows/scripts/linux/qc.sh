#!/bin/bash
# CloudOps Linux QC engine: the pre-patching checks of one server for a change.
#
# Prints the QC report in the format of the Linux Patcher QC report that operators already read
# (one "(Fact): value" line per fact), writes the same report to
# $WORKDIR/$CHANGE_NUMBER/qc_report.txt, and then prints a "----- CLOUDOPS FACTS -----" block of
# KEY=value lines (distribution from /etc/os-release, package manager, free space, the state of
# the agents a change must not lose) that the flow's parser reads; the report itself has no
# distribution line and keeps its format. The post check compares those agent states with the
# ones it finds after the patch window.
#
# Parameters (environment variables, set by the flow's quoted header):
#   CHANGE_NUMBER          change ticket, 1-50 of A-Z a-z 0-9 _ - (required)
#   WORKDIR                absolute directory that holds the change folder (default /root)
#   MIN_VAR_FREE_GB        whole GB that must be free in /var for the disk check (default 3)
#   REPO_TIMEOUT_SECONDS   limit for the repository metadata refresh (default 600)
#
# Checks:
#   repositories  the package manager refreshes its metadata (dnf/yum makecache, apt-get update)
#   disk          at least MIN_VAR_FREE_GB GB free in /var (df)
#   CrowdStrike   `falconctl -g --rfm-state` says rfm-state=false, and falcon-sensor is not
#                 reported inactive by systemd
#   kernels       kernel packages newer than the running kernel that the repositories offer
# Nothing on the server changes except the package metadata cache and the change folder.
#
# Exit status: 0 when the report was produced (pass or fail is in the report), 1 when it could
# not be saved on the server, 2 when a parameter or the change folder is refused (nothing is run
# or written then): see the library below for what makes a folder unsafe.
#
# Every absolute path goes through $CLOUDOPS_ROOT (empty on a real server) so that the tests can
# run this script for real in a sandbox.
set -u
umask 077 # what this script creates is root's alone: the report holds the server's details

# cloudops-include: change_folder.sh

root="${CLOUDOPS_ROOT:-}"
change="${CHANGE_NUMBER:-}"
workdir="${WORKDIR:-/root}"
min_var_free_gb="${MIN_VAR_FREE_GB:-3}"
repo_timeout="${REPO_TIMEOUT_SECONDS:-600}"

refuse() {
    echo "qc.sh refused to run: $1" >&2
    exit 2
}

[[ "$change" =~ ^[A-Za-z0-9_-]{1,50}$ ]] ||
    refuse "CHANGE_NUMBER must be 1 to 50 letters, digits, '-' or '_'. Fix the change number."
[[ "$workdir" =~ ^/[A-Za-z0-9._/-]{0,200}$ && "/$workdir/" != */../* ]] ||
    refuse "WORKDIR must be an absolute path of letters, digits, '.', '_', '-' and '/' without '..'."
[[ "$min_var_free_gb" =~ ^[0-9]{1,5}$ ]] ||
    refuse "MIN_VAR_FREE_GB must be a whole number of GB, such as 3."
[[ "$repo_timeout" =~ ^[0-9]{1,5}$ && "$repo_timeout" -gt 0 ]] ||
    refuse "REPO_TIMEOUT_SECONDS must be a whole number of seconds, such as 600."

change_dir="$root$workdir/$change"
report_file="$change_dir/qc_report.txt"

# One printable line, so that a fact can never break the KEY=value block it is printed in.
one_line() {
    printf '%s' "$1" | tr '\n\t' '  ' | tr -d '\000-\037\177'
}

# Reads one key of /etc/os-release without sourcing it: the file is data, not code to run.
os_release_value() {
    local value
    value="$(sed -n "s/^$1=//p" "$root/etc/os-release" 2>/dev/null | head -n 1)"
    value="${value#\"}"
    value="${value%\"}"
    value="${value#\'}"
    value="${value%\'}"
    one_line "$value"
}

# Runs a command under `timeout` where coreutils has it, so a hung repository cannot hold the
# QC past its SSM execution timeout without a report.
run_limited() {
    if command -v timeout >/dev/null 2>&1; then
        timeout "$repo_timeout" "$@"
    else
        "$@"
    fi
}

# True when version $1 sorts after version $2 (GNU sort -V compares number runs as numbers).
is_newer() {
    [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1)" = "$1" ]
}

strip_arch() {
    local value="$1"
    for arch in x86_64 aarch64 noarch i686; do
        value="${value%."$arch"}"
    done
    printf '%s' "$value"
}

if command -v dnf >/dev/null 2>&1; then
    pkg_manager="dnf"
elif command -v yum >/dev/null 2>&1; then
    pkg_manager="yum"
elif command -v apt-get >/dev/null 2>&1; then
    pkg_manager="apt"
else
    pkg_manager="none"
fi

save_failed=""
folder_problem="$(cloudops_change_folder "$root" "$workdir" "$change")"
case $? in
    0) ;;
    2) refuse "$folder_problem. Nothing was run." ;;
    *) save_failed="$folder_problem" ;;
esac
repo_log="/dev/null"
if [ -z "$save_failed" ]; then
    repo_log="$(cloudops_temp_file "$change_dir" qc_repo_check.log)" || repo_log="/dev/null"
fi

host="$(hostname 2>/dev/null || cat "$root/etc/hostname" 2>/dev/null || echo unknown)"
current_date="$(date)"
running_since="$(uptime -s 2>/dev/null || echo unknown)"
running_kernel="$(uname -r)"
running_version="$(strip_arch "$running_kernel")"

# --- Repositories -------------------------------------------------------------------------
repo_result="FAILED"
repo_message=""
case "$pkg_manager" in
    dnf | yum)
        if run_limited "$pkg_manager" -q -y makecache >"$repo_log" 2>&1; then
            repo_result="PASSED"
        fi
        ;;
    apt)
        # apt-get update exits 0 even when a repository could not be fetched; its W:/E: lines
        # are what say so.
        if run_limited apt-get -q update >"$repo_log" 2>&1 &&
            ! grep -Eq '^(E:|W: Failed to fetch|W: Some index files failed)' "$repo_log"; then
            repo_result="PASSED"
        fi
        ;;
    *)
        repo_message="no dnf, yum or apt-get found on PATH"
        ;;
esac
if [ "$repo_result" = "FAILED" ] && [ -z "$repo_message" ] && [ -s "$repo_log" ]; then
    # The message leaves the server in the flow's report, so repository URLs lose any
    # user:password@ and query string (tokens) they carry; the full log stays on the server.
    repo_message="$(grep -v '^[[:space:]]*$' "$repo_log" | tail -n 1 |
        sed -E 's#://[^/@[:space:]]*@#://#g; s#(://[^?[:space:]]*)\?[^[:space:]]*#\1#g')"
fi

# --- Disk ---------------------------------------------------------------------------------
disk_result="FAILED"
var_free_kb="$(df -Pk "$root/var" 2>/dev/null | awk 'NR == 2 { print $4 }')"
if [[ "$var_free_kb" =~ ^[0-9]+$ ]] && ((var_free_kb >= min_var_free_gb * 1024 * 1024)); then
    disk_result="PASSED"
fi

# --- CrowdStrike --------------------------------------------------------------------------
falconctl_cmd=""
if command -v falconctl >/dev/null 2>&1; then
    falconctl_cmd="falconctl"
elif [ -x "$root/opt/CrowdStrike/falconctl" ]; then
    falconctl_cmd="$root/opt/CrowdStrike/falconctl"
fi
crowdstrike_running="No"
crowdstrike_version="Not installed"
rfm_state="not installed"
if [ -n "$falconctl_cmd" ]; then
    rfm_output="$("$falconctl_cmd" -g --rfm-state 2>/dev/null)"
    case "$rfm_output" in
        *rfm-state=false*) rfm_state="false" ;;
        *rfm-state=true*) rfm_state="true" ;;
        *) rfm_state="unknown" ;;
    esac
    version_output="$("$falconctl_cmd" -g --version 2>/dev/null)"
    crowdstrike_version="$(one_line "${version_output#*=}" | sed 's/^ *//; s/[ .,]*$//')"
    [ -n "$crowdstrike_version" ] || crowdstrike_version="Unknown"
    sensor_state="unknown"
    if command -v systemctl >/dev/null 2>&1; then
        sensor_state="$(systemctl is-active falcon-sensor 2>/dev/null | head -n 1)"
    fi
    # Only a state systemd actually reports counts against the sensor: a host without systemd
    # answers with an error, which says nothing about CrowdStrike.
    if [ "$rfm_state" = "false" ] && [ "$sensor_state" != "inactive" ] &&
        [ "$sensor_state" != "failed" ]; then
        crowdstrike_running="Yes"
    fi
fi

# --- Agents -------------------------------------------------------------------------------
# The agents a change must not lose, as post_qc.sh reports them (running, stopped,
# not_installed, unknown), so the post check can tell an agent removed during the window.
agent_state() {
    local unit="$1"
    shift
    local installed="no" asked="no" active="" pkg load
    for pkg in "$@"; do
        if command -v rpm >/dev/null 2>&1; then
            asked="yes"
            rpm -q --quiet "$pkg" >/dev/null 2>&1 && installed="yes"
        fi
        if command -v dpkg-query >/dev/null 2>&1; then
            asked="yes"
            dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q ' installed$' &&
                installed="yes"
        fi
    done
    if command -v systemctl >/dev/null 2>&1; then
        asked="yes"
        load="$(systemctl show -p LoadState "$unit.service" 2>/dev/null)"
        case "$load" in
            LoadState=loaded | LoadState=masked) installed="yes" ;;
        esac
        active="$(systemctl is-active "$unit.service" 2>/dev/null | head -n 1)"
    fi
    if [ "$active" = "active" ] || [ "$active" = "reloading" ]; then
        echo "running"
    elif [ "$installed" = "yes" ] && command -v systemctl >/dev/null 2>&1; then
        echo "stopped"
    elif [ "$installed" = "no" ] && [ "$asked" = "yes" ]; then
        echo "not_installed"
    else
        echo "unknown"
    fi
}
falcon_agent="$(agent_state falcon-sensor falcon-sensor)"
bigfix_agent="$(agent_state besclient BESAgent)"

# --- Kernels ------------------------------------------------------------------------------
kernel_lines=""
case "$pkg_manager" in
    dnf | yum)
        # Only the "kernel" package is listed: kernel-core has the same versions and would
        # double every line. yum wraps long lines when a repository name is long, so the
        # listing is read as a stream of words: a kernel package word, its version, its repo.
        candidates="$(run_limited "$pkg_manager" -q list available kernel --showduplicates \
            2>/dev/null | awk '
            { for (i = 1; i <= NF; i++) word[n++] = $i }
            END {
                for (i = 0; i + 1 < n; i++) {
                    if (word[i] ~ /^kernel(-core)?\.[A-Za-z0-9_]+$/ && word[i + 1] ~ /^([0-9]+:)?[0-9]/) {
                        line = word[i] "  " word[i + 1]
                        if (i + 2 < n && word[i + 2] !~ /^kernel/) {
                            line = line "  " word[i + 2]
                            i++
                        }
                        print line
                        i++
                    }
                }
            }')"
        while IFS= read -r line; do
            [ -n "$line" ] || continue
            version="$(printf '%s' "$line" | awk '{ print $2 }' | sed 's/^[0-9]*://')"
            if is_newer "$version" "$running_version"; then
                kernel_lines+="$line"$'\n'
            fi
        done <<<"$candidates"
        ;;
    apt)
        # Ubuntu and Debian name each kernel build as its own package; the flavour after the
        # ABI number (generic, aws, cloud-amd64) must match the running one.
        flavour="$(printf '%s' "$running_version" | sed -n 's/^[0-9.]*-[0-9]*-\([a-z0-9-]*\)$/\1/p')"
        if [ -n "$flavour" ]; then
            candidates="$(apt-cache search --names-only "^linux-image-[0-9.]+-[0-9]+-${flavour}\$" \
                2>/dev/null | awk '{ print $1 }' | sort -V -u)"
            while IFS= read -r package; do
                [ -n "$package" ] || continue
                if is_newer "${package#linux-image-}" "$running_version"; then
                    kernel_lines+="$package"$'\n'
                fi
            done <<<"$candidates"
        fi
        ;;
esac
kernel_lines="$(printf '%s' "$kernel_lines" | awk '!seen[$0]++')"
[ -n "$kernel_lines" ] || kernel_lines="NO KERNEL UPDATES AVAILABLE"

# --- Report -------------------------------------------------------------------------------
report="$(
    printf '===== QC report for %s =====\n' "$host"
    printf '(Current date): %s\n' "$current_date"
    printf '(Server running since): %s\n' "$running_since"
    printf '(Current running kernel version): %s\n' "$running_kernel"
    printf '(Is Crowdstrike running): %s\n' "$crowdstrike_running"
    printf '(Current Crowdstrike Version): %s\n' "$crowdstrike_version"
    printf '(Available Kernel Updates):\n%s\n' "$kernel_lines"
    printf '(Test Repositories Result): %s\n' "$repo_result"
    printf '(Disk Space Check Result): %s\n' "$disk_result"
)"

if [ -z "$save_failed" ] && ! printf '%s\n' "$report" | cloudops_write_file "$report_file"; then
    save_failed="could not write $workdir/$change/qc_report.txt"
fi
if [ "$repo_log" != "/dev/null" ]; then
    mv -fT -- "$repo_log" "$change_dir/qc_repo_check.log" 2>/dev/null || rm -f -- "$repo_log"
fi

printf '%s\n' "$report"
echo "----- CLOUDOPS FACTS -----"
echo "OS_ID=$(os_release_value ID)"
echo "OS_VERSION_ID=$(os_release_value VERSION_ID)"
echo "OS_PRETTY_NAME=$(os_release_value PRETTY_NAME)"
echo "PKG_MANAGER=$pkg_manager"
echo "VAR_FREE_KB=$(one_line "$var_free_kb")"
echo "MIN_VAR_FREE_GB=$min_var_free_gb"
echo "CROWDSTRIKE_RFM_STATE=$rfm_state"
echo "AGENT_FALCON_SENSOR=$falcon_agent"
echo "AGENT_BESCLIENT=$bigfix_agent"
echo "REPO_CHECK_MESSAGE=$(one_line "$repo_message" | cut -c 1-300)"
echo "REPORT_FILE=$workdir/$change/qc_report.txt"
echo "----- END CLOUDOPS FACTS -----"

if [ -n "$save_failed" ]; then
    echo "qc.sh: the report was printed but not saved on the server: $save_failed" >&2
    exit 1
fi
exit 0
