#!/bin/bash
# The patch window's preflight on one server: can the staged kernel be installed here now?
# Read-only: it reads files and asks the package manager, writes and installs nothing.
#
# Facts reported (the flow judges them, see flows/linux_patching/window/preflight.py):
#   - the target: the newkernel="..." line of <workdir>/<CHANGE>/patchme.sh (our staging's, or
#     the Linux Patcher's), and the running kernel and boot id;
#   - whether the repositories still offer the target (or it is installed already);
#   - free space in /boot against what one more kernel needs (the running kernel's files);
#   - whether a package-manager lock is held (yum/dnf pid files whose process lives, dpkg locks
#     through fuser);
#   - CrowdStrike's own verdict on the target kernel, from /opt/CrowdStrike/falcon-kernel-check
#     where the sensor ships it (absent: the flow notes it as unknown);
#   - reboots an earlier window run of this change already did here (<change>/window/reboots).
#
# Parameters (environment variables, set by the flow's quoted header):
#   CHANGE_NUMBER   change ticket, 1-50 of A-Z a-z 0-9 _ - (required)
#   WORKDIR         absolute directory that holds the change folder (default /root)
#
# Output: human lines, then KEY=value lines between
#   ----- CLOUDOPS WINDOW PREFLIGHT BEGIN -----  and  ----- CLOUDOPS WINDOW PREFLIGHT END -----
# values limited to [A-Za-z0-9._:/@+,%~ -]. Exit status: 0 once the facts are printed, 2 when a
# parameter is refused.
#
# Every absolute path goes through $CLOUDOPS_ROOT (empty on a real server) so that the tests can
# run this script for real in a sandbox.
set -u
export LC_ALL=C

root="${CLOUDOPS_ROOT:-}"
change="${CHANGE_NUMBER:-}"
workdir="${WORKDIR:-/root}"

refuse() {
    echo "window_preflight.sh refused to run: $1" >&2
    exit 2
}

[[ "$change" =~ ^[A-Za-z0-9_-]{1,50}$ ]] ||
    refuse "CHANGE_NUMBER must be 1 to 50 letters, digits, '-' or '_'. Fix the change number."
[[ "$workdir" =~ ^/[A-Za-z0-9._/-]{0,200}$ && "/$workdir/" != */../* ]] ||
    refuse "WORKDIR must be an absolute path of letters, digits, '.', '_', '-' and '/' without '..'."

have() { command -v "$1" >/dev/null 2>&1; }

summary_lines=()
summary() {
    local value="${2//[^A-Za-z0-9._:\/@+,%~ -]/_}"
    summary_lines+=("$1=${value:0:300}")
}

read_first_line() {
    local value=""
    [ -r "$1" ] && IFS= read -r value <"$1"
    printf '%s' "$value"
}

strip_arch() {
    local value="$1"
    for arch in x86_64 aarch64 noarch i686; do
        value="${value%."$arch"}"
    done
    printf '%s' "$value"
}

bounded() {
    if have timeout; then
        timeout 120 "$@"
    else
        "$@"
    fi
}

host_name="$(hostname 2>/dev/null || read_first_line "$root/etc/hostname")"
running="$(uname -r 2>/dev/null)"
boot_id="$(read_first_line "$root/proc/sys/kernel/random/boot_id")"
summary HOSTNAME "${host_name:-unknown}"
summary KERNEL_RUNNING "${running:-unknown}"
summary BOOT_ID "${boot_id:-unknown}"
echo "===== Patch window preflight for ${host_name:-unknown} ====="
echo "(Current running kernel version): ${running:-unknown}"

# --- patchme.sh and its target ---------------------------------------------------------------
change_dir="$root$workdir/$change"
patchme="$change_dir/patchme.sh"
target=""
if [ -L "$patchme" ]; then
    # Not what prep wrote: the install refuses a linked patchme.sh, so the preflight does too.
    summary PATCHME "a symbolic link"
elif [ ! -e "$patchme" ]; then
    summary PATCHME missing
elif [ ! -r "$patchme" ]; then
    summary PATCHME unreadable
else
    summary PATCHME present
    target="$(sed -n 's/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}newkernel=["'"'"']\{0,1\}\([^"'"'"'[:space:]]*\).*$/\2/p' "$patchme" | head -n 1)"
    target="${target#kernel-core-}"
    target="${target#kernel-}"
    target="${target#linux-image-}"
    target="$(strip_arch "$target")"
    [[ "$target" =~ ^[0-9]+\.[0-9]+[A-Za-z0-9._+~-]*$ ]] || target=""
fi
summary PATCHME_KERNEL "$target"
echo "(Staged kernel in patchme.sh): ${target:-none}"

# --- The package manager: offered, installed, locked ---------------------------------------
pkg_manager="none"
if have dnf; then
    pkg_manager="dnf"
elif have yum; then
    pkg_manager="yum"
elif have apt-get; then
    pkg_manager="apt"
fi
summary PKG_MANAGER "$pkg_manager"

installed="unknown"
offered="unknown"
if [ -n "$target" ]; then
    case "$pkg_manager" in
        dnf | yum)
            if have rpm; then
                installed="no"
                rpm -q "kernel-$target" >/dev/null 2>&1 && installed="yes"
            fi
            listing="$(bounded "$pkg_manager" -q list available --showduplicates "kernel-$target" 2>/dev/null)"
            if [ $? -eq 0 ] || [ -n "$listing" ]; then
                offered="no"
                printf '%s\n' "$listing" | grep -qF -- "$target" && offered="yes"
            fi
            ;;
        apt)
            if have dpkg; then
                installed="no"
                dpkg -s "linux-image-$target" 2>/dev/null | grep -q '^Status: .* installed' &&
                    installed="yes"
            fi
            if have apt-cache; then
                candidate="$(apt-cache policy "linux-image-$target" 2>/dev/null |
                    sed -n 's/^[[:space:]]*Candidate:[[:space:]]*//p' | head -n 1)"
                offered="no"
                [ -n "$candidate" ] && [ "$candidate" != "(none)" ] && offered="yes"
            fi
            ;;
    esac
fi
summary TARGET_INSTALLED "$installed"
summary TARGET_OFFERED "$offered"
echo "(Target offered by the repositories): $offered (installed: $installed)"

lock="unknown"
lock_detail=""
case "$pkg_manager" in
    dnf | yum)
        lock="free"
        for pid_file in "$root/var/run/yum.pid" "$root/run/yum.pid" "$root/var/run/dnf.pid" \
            "$root/var/cache/dnf/metadata_lock.pid" "$root/var/lib/dnf/rpmdb_lock.pid"; do
            [ -r "$pid_file" ] || continue
            pid="$(read_first_line "$pid_file")"
            if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
                lock="held"
                lock_detail="${pid_file#"$root"} names process $pid, which is running"
                break
            fi
        done
        ;;
    apt)
        if have fuser; then
            lock="free"
            for lock_file in "$root/var/lib/dpkg/lock-frontend" "$root/var/lib/dpkg/lock"; do
                holders="$(fuser "$lock_file" 2>/dev/null)"
                if [ -n "${holders// /}" ]; then
                    lock="held"
                    lock_detail="${lock_file#"$root"} is held by process$holders"
                    break
                fi
            done
        else
            lock_detail="no fuser to ask who holds the dpkg lock"
        fi
        ;;
esac
summary PKG_LOCK "$lock"
summary PKG_LOCK_DETAIL "$lock_detail"
echo "(Package manager lock): $lock${lock_detail:+ ($lock_detail)}"

# --- /boot ----------------------------------------------------------------------------------
boot_free="unknown"
if have df && [ -e "$root/boot" ]; then
    boot_free="$(df -Pk "$root/boot" 2>/dev/null | awk 'NR == 2 { print $4 }')"
    [[ "$boot_free" =~ ^[0-9]+$ ]] || boot_free="unknown"
fi
# One more kernel needs about what the running one takes (vmlinuz, initramfs, System.map,
# config), with a margin; 100 MB when those files cannot be seen.
boot_needed=0
if [ -n "$running" ]; then
    for file in "$root/boot/"*"$running"*; do
        [ -f "$file" ] || continue
        size="$(wc -c <"$file" 2>/dev/null)"
        [[ "${size// /}" =~ ^[0-9]+$ ]] && boot_needed=$((boot_needed + ${size// /} / 1024))
    done
fi
if [ "$boot_needed" -gt 0 ]; then
    boot_needed=$((boot_needed + boot_needed / 10))
else
    boot_needed=102400
fi
summary BOOT_FREE_KB "$boot_free"
summary BOOT_NEEDED_KB "$boot_needed"
echo "(Free in /boot): $boot_free KB, one more kernel needs about $boot_needed KB"

# --- CrowdStrike's support of the target kernel -------------------------------------------
falcon_check="absent"
falcon_output=""
checker="$root/opt/CrowdStrike/falcon-kernel-check"
if [ -n "$target" ] && [ -x "$checker" ]; then
    falcon_output="$(bounded "$checker" -k "$target" 2>&1 | tr '\n' ' ')"
    case "$falcon_output" in
        *"not supported"* | *"NOT supported"* | *"unsupported"*) falcon_check="unsupported" ;;
        *"is supported"* | *"supported by"*) falcon_check="supported" ;;
        *) falcon_check="unknown" ;;
    esac
elif [ -z "$target" ]; then
    falcon_check="unknown"
fi
summary FALCON_KERNEL_CHECK "$falcon_check"
summary FALCON_KERNEL_CHECK_OUTPUT "$falcon_output"
echo "(CrowdStrike support of the target): $falcon_check"

# --- What an earlier window run of this change did here --------------------------------------
reboots="$(read_first_line "$change_dir/window/reboots")"
[[ "$reboots" =~ ^[0-9]+$ ]] || reboots=0
summary WINDOW_REBOOTS "$reboots"
summary WINDOW_BOOT_ID_BEFORE "$(read_first_line "$change_dir/window/boot_id_before")"

echo "----- CLOUDOPS WINDOW PREFLIGHT BEGIN -----"
echo "PREFLIGHT_VERSION=1"
printf '%s\n' "${summary_lines[@]}"
echo "----- CLOUDOPS WINDOW PREFLIGHT END -----"
exit 0
