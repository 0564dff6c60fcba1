#!/bin/bash
# Installs the kernel a change staged on this server, makes it the default boot entry and asks
# the SSM agent to reboot: the patch window's install step, and the body of the patchme.sh that
# linux-qc-patching-prep writes.
#
# The SSM agent's reboot protocol (AWS-RunShellScript on Linux): a script that exits 194 asks
# the agent to reboot the instance; the agent keeps the command InProgress, reboots, and runs
# the same script again from the start once it is back, so the command follows the whole
# reboot. The script must therefore be idempotent, and this one is:
#
#   1st run   the running kernel is the target: report it, exit 0 (nothing installed).
#             Otherwise install the target with the package manager, make it the default boot
#             entry, record the reboot in the change folder, exit 194. An install that fails
#             exits 1 and never reboots.
#   2nd run   (after the boot; the boot id differs from the recorded one) the target runs: exit
#             0 with the boot ids and kernels. Another kernel runs (the boot fell back, GRUB
#             chose another entry): exit 1 naming it. It never asks for a second reboot: one
#             reboot at most per change, kept in <workdir>/<CHANGE>/window/.
#
# The target is the newkernel="..." line of <workdir>/<CHANGE>/patchme.sh, whoever wrote it (our
# staging, or the Linux Patcher); patchme.sh itself is never run here, so its own reboot is not
# used.
#
# Parameters (environment variables, set by the flow's quoted header, or by patchme.sh):
#   CHANGE_NUMBER    change ticket, 1-50 of A-Z a-z 0-9 _ - (required)
#   WORKDIR          absolute directory that holds the change folder (default /root)
#   STAGED_KERNELS   optional, comma-separated: the kernels the flow expects; a patchme.sh naming
#                    another one is refused before anything is installed
#
# Output: human lines, then a block that flows/linux_patching/window/install.py reads:
#   ----- CLOUDOPS WINDOW INSTALL BEGIN -----  KEY=value lines  ----- CLOUDOPS WINDOW INSTALL END -----
# STATE is one of already_running_target, rebooting, booted_target, booted_other,
# install_failed, reboot_pending, refused.
#
# Exit status: 0 the target runs, 194 reboot now (the agent runs this again), 1 failed (nothing
# rebooted), 2 refused (nothing installed).
#
# Every absolute path goes through $CLOUDOPS_ROOT (empty on a real server) so that the tests can
# run this script for real in a sandbox.
set -u

# cloudops-include: change_folder.sh
root="${CLOUDOPS_ROOT:-}"
change="${CHANGE_NUMBER:-}"
workdir="${WORKDIR:-/root}"
staged_kernels="${STAGED_KERNELS:-}"

REBOOT_EXIT=194
kernel_pattern='^[0-9]+\.[0-9]+[A-Za-z0-9._+~-]*$'

# Facts for the summary block, in the order printed.
state=""
reason=""
target=""
kernel_before=""
boot_id_before=""
pkg_manager="none"
default_entry="unknown"
reboots=0

one_line() {
    printf '%s' "$1" | tr '\n\t' '  ' | tr -d '\000-\037\177' | cut -c 1-300
}

strip_arch() {
    local value="$1"
    for arch in x86_64 aarch64 noarch i686; do
        value="${value%."$arch"}"
    done
    printf '%s' "$value"
}

read_first_line() {
    local value=""
    [ -r "$1" ] && IFS= read -r value <"$1"
    printf '%s' "$value"
}

summary() {
    echo "----- CLOUDOPS WINDOW INSTALL BEGIN -----"
    echo "INSTALL_VERSION=1"
    echo "STATE=$state"
    echo "TARGET=$target"
    echo "KERNEL_BEFORE=$kernel_before"
    echo "KERNEL_RUNNING=$running"
    echo "BOOT_ID_BEFORE=$boot_id_before"
    echo "BOOT_ID=$boot_id"
    echo "REBOOTS=$reboots"
    echo "PKG_MANAGER=$pkg_manager"
    echo "DEFAULT_ENTRY=$default_entry"
    echo "REASON=$(one_line "$reason")"
    echo "----- CLOUDOPS WINDOW INSTALL END -----"
}

finish() {
    state="$1"
    reason="${3:-}"
    [ -z "$reason" ] || echo "window_install: $reason" >&2
    summary
    exit "$2"
}

running="$(uname -r 2>/dev/null)"
boot_id="$(read_first_line "$root/proc/sys/kernel/random/boot_id")"
: "${boot_id:=unknown}"

[[ "$change" =~ ^[A-Za-z0-9_-]{1,50}$ ]] ||
    finish refused 2 "CHANGE_NUMBER must be 1 to 50 letters, digits, '-' or '_'"
[[ "$workdir" =~ ^/[A-Za-z0-9._/-]{0,200}$ && "/$workdir/" != */../* ]] ||
    finish refused 2 "WORKDIR must be an absolute path of letters, digits, '.', '_', '-' and '/' without '..'"
[[ -z "$staged_kernels" || "$staged_kernels" =~ ^[A-Za-z0-9._+~,-]{1,4000}$ ]] ||
    finish refused 2 "STAGED_KERNELS must be kernel versions separated by commas"

change_dir="$root$workdir/$change"
patchme="$change_dir/patchme.sh"
state_dir="$change_dir/window"

# --- The change folder: root's alone (lib/change_folder.sh) --------------------------------
# This script runs as root and writes in <workdir>/<CHANGE>/window: a folder on the way that
# another user could swap or write into would let them choose what root writes or installs.
folder_problem="$(cloudops_folder_to_read "$root" "$workdir" "$change")" ||
    finish refused 2 "$folder_problem: nothing installed"
if [ -L "$patchme" ]; then
    finish refused 2 "$workdir/$change/patchme.sh is a symbolic link: stage the kernel again with the prep flow; nothing installed"
fi
if [ -e "$state_dir" ] || [ -L "$state_dir" ]; then
    folder_problem="$(cloudops_own_folder_problem "$state_dir" "the folder $workdir/$change/window")" ||
        finish refused 2 "$folder_problem: nothing installed"
fi

# --- The target: patchme.sh's newkernel line ---------------------------------------------
[ -r "$patchme" ] ||
    finish refused 2 "no patchme.sh at $workdir/$change/patchme.sh: stage the kernel with the prep flow first"
target="$(sed -n 's/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}newkernel=["'"'"']\{0,1\}\([^"'"'"'[:space:]]*\).*$/\2/p' "$patchme" | head -n 1)"
# The Linux Patcher may name the package (kernel-..., linux-image-...) and its architecture.
target="${target#kernel-core-}"
target="${target#kernel-}"
target="${target#linux-image-}"
target="$(strip_arch "$target")"
if ! [[ "$target" =~ $kernel_pattern ]] || [ "${#target}" -gt 128 ]; then
    bad="$(one_line "$target")"
    target=""
    finish refused 2 "patchme.sh has no usable newkernel= line (found '$bad')"
fi
if [ -n "$staged_kernels" ] && [[ ",$staged_kernels," != *",$target,"* ]]; then
    finish refused 2 "patchme.sh now names $target, not a kernel this window expects ($staged_kernels): it changed since the preflight; nothing installed"
fi

# --- A run after the reboot this change asked for ----------------------------------------
if [ -f "$state_dir/reboots" ]; then
    reboots="$(read_first_line "$state_dir/reboots")"
    [[ "$reboots" =~ ^[0-9]+$ ]] || reboots=1
    boot_id_before="$(read_first_line "$state_dir/boot_id_before")"
    kernel_before="$(read_first_line "$state_dir/kernel_before")"
    pkg_manager="$(read_first_line "$state_dir/pkg_manager")"
    default_entry="$(read_first_line "$state_dir/default_entry")"
    if [ "$boot_id" != "$boot_id_before" ]; then
        if [ "$(strip_arch "$running")" = "$(strip_arch "$target")" ]; then
            echo "Kernel $target runs after the reboot for change $change (before: $kernel_before)."
            finish booted_target 0
        fi
        finish booted_other 1 "booted $running, not the target $target; this change already rebooted this server once and will not reboot it again: look at its boot entries"
    fi
    finish reboot_pending 1 "a reboot was asked for this change and has not happened (same boot $boot_id); not asking again: reboot it by hand or look at the SSM agent"
fi

# --- Already there ------------------------------------------------------------------------
kernel_before="$running"
if [ "$(strip_arch "$running")" = "$(strip_arch "$target")" ]; then
    echo "Kernel $target already runs: nothing to install, no reboot."
    finish already_running_target 0
fi

# --- Install --------------------------------------------------------------------------------
if command -v dnf >/dev/null 2>&1; then
    pkg_manager="dnf"
    install=(dnf -y install "kernel-$target")
    installed=(rpm -q "kernel-$target")
elif command -v yum >/dev/null 2>&1; then
    pkg_manager="yum"
    install=(yum -y install "kernel-$target")
    installed=(rpm -q "kernel-$target")
elif command -v apt-get >/dev/null 2>&1; then
    pkg_manager="apt"
    export DEBIAN_FRONTEND=noninteractive
    install=(apt-get install -y "linux-image-$target")
    installed=(dpkg -s "linux-image-$target")
else
    finish install_failed 1 "no dnf, yum or apt-get on this server: kernel $target not installed, not rebooting"
fi

if [ ! -d "$state_dir" ]; then
    mkdir -m 700 -- "$state_dir" 2>/dev/null ||
        finish install_failed 1 "could not create $workdir/$change/window to record the reboot: nothing installed, not rebooting"
    # Checked again once it exists: nobody may have slipped a link in between.
    folder_problem="$(cloudops_own_folder_problem "$state_dir" "the folder $workdir/$change/window")" ||
        finish refused 2 "$folder_problem: nothing installed"
fi
install_log="$state_dir/install.log"
echo "Installing kernel $target for change $change with $pkg_manager (running $running)."
if ! "${install[@]}" >"$install_log" 2>&1; then
    last="$(grep -v '^[[:space:]]*$' "$install_log" | tail -n 1)"
    finish install_failed 1 "$pkg_manager could not install kernel $target: ${last:-no message}; not rebooting"
fi
# Never reboot into the old kernel believing the new one is there.
"${installed[@]}" >/dev/null 2>&1 ||
    finish install_failed 1 "$pkg_manager reported success but kernel $target is not installed; not rebooting"

# --- The default boot entry -----------------------------------------------------------------
if command -v grubby >/dev/null 2>&1; then
    image=""
    for candidate in "$root/boot/vmlinuz-$target" "$root/boot/vmlinuz-$target".*; do
        if [ -e "$candidate" ]; then
            image="${candidate#"$root"}"
            break
        fi
    done
    [ -n "$image" ] ||
        finish install_failed 1 "kernel $target is installed but /boot/vmlinuz-$target is missing: not rebooting"
    grubby --set-default "$image" >>"$install_log" 2>&1 ||
        finish install_failed 1 "grubby could not make $image the default boot entry: not rebooting"
    default_entry="set"
elif command -v grub-set-default >/dev/null 2>&1 &&
    grep -q '^GRUB_DEFAULT=saved' "$root/etc/default/grub" 2>/dev/null; then
    entry="Advanced options for Ubuntu>Ubuntu, with Linux $target"
    grub-set-default "$entry" >>"$install_log" 2>&1 ||
        finish install_failed 1 "grub-set-default could not select '$entry': not rebooting"
    default_entry="set"
else
    # Debian and Ubuntu boot the newest installed kernel first (GRUB_DEFAULT=0).
    default_entry="distribution"
fi

# --- Record, then ask the agent for the reboot ---------------------------------------------
record() {
    printf '%s\n' "$2" >"$state_dir/$1.part" && mv -f "$state_dir/$1.part" "$state_dir/$1"
}
record boot_id_before "$boot_id" &&
    record kernel_before "$running" &&
    record target "$target" &&
    record pkg_manager "$pkg_manager" &&
    record default_entry "$default_entry" &&
    record asked_at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" &&
    record reboots 1 ||
    finish install_failed 1 "kernel $target is installed but the reboot could not be recorded in $workdir/$change/window: not rebooting (a second run could not tell it rebooted)"
reboots=1
boot_id_before="$boot_id"
echo "Kernel $target installed and made the default boot entry; asking the SSM agent to reboot."
finish rebooting "$REBOOT_EXIT"
