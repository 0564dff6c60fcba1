#!/bin/bash
# Stages the kernel chosen for a change: writes $WORKDIR/$CHANGE_NUMBER/patchme.sh, the script
# the patch job runs later in the patch window. It carries the target in a line
# newkernel="<kernel>" (what the patch window and the post check read), and its body is
# linux/window_install.sh (given as PATCHME_BODY): run by the SSM agent it installs that kernel,
# makes it the default boot entry and exits 194 so that the agent reboots the server and runs it
# again, which then reports the kernel it booted. It never reboots by itself and reboots at most
# once per change (see window_install.sh).
#
# Staging itself installs nothing and reboots nothing: it only writes that file, then prints a
# confirmation and the file.
#
# Parameters (environment variables, set by the flow's quoted header):
#   CHANGE_NUMBER   change ticket, 1-50 of A-Z a-z 0-9 _ - (required)
#   WORKDIR         absolute directory that holds the change folder (default /root)
#   NEW_KERNEL      kernel version to install, as the QC listed it, e.g. 4.18.0-553.45.1.el8_10
#                   or 5.15.0-105-generic (required)
#   PATCHME_BODY    the text of linux/window_install.sh (required)
#
# Exit status: 0 when patchme.sh was written, 1 when it could not be, 2 when a parameter or the
# change folder is refused (nothing is written then; see the library below).
#
# Every absolute path goes through $CLOUDOPS_ROOT (empty on a real server) so that the tests can
# run this script, and the patchme.sh it writes, for real in a sandbox.
set -u
umask 077 # patchme.sh is run by root in the patch window: nobody else may change it

# cloudops-include: change_folder.sh

root="${CLOUDOPS_ROOT:-}"
change="${CHANGE_NUMBER:-}"
workdir="${WORKDIR:-/root}"
new_kernel="${NEW_KERNEL:-}"
patchme_body="${PATCHME_BODY:-}"

refuse() {
    echo "stage_kernel.sh refused to run: $1" >&2
    exit 2
}

[[ "$change" =~ ^[A-Za-z0-9_-]{1,50}$ ]] ||
    refuse "CHANGE_NUMBER must be 1 to 50 letters, digits, '-' or '_'. Fix the change number."
[[ "$workdir" =~ ^/[A-Za-z0-9._/-]{0,200}$ && "/$workdir/" != */../* ]] ||
    refuse "WORKDIR must be an absolute path of letters, digits, '.', '_', '-' and '/' without '..'."
# The version is written between double quotes in patchme.sh, so the characters allowed here
# (no quote, $, backtick, backslash, space or /) can never end that string or expand.
[[ ${#new_kernel} -le 128 && "$new_kernel" =~ ^[0-9]+\.[0-9]+[A-Za-z0-9._+~-]*$ ]] ||
    refuse "NEW_KERNEL must be a kernel version such as 4.18.0-553.45.1.el8_10 (digits and dots first, then only letters, digits and . _ + ~ -)."
[[ "$patchme_body" == "#!"* && "$patchme_body" == *"CLOUDOPS WINDOW INSTALL"* ]] ||
    refuse "PATCHME_BODY must be the text of linux/window_install.sh."

change_dir="$root$workdir/$change"
patchme="$change_dir/patchme.sh"
staged_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

partial=""
fail() {
    echo "stage_kernel.sh: $1" >&2
    [ -z "$partial" ] || rm -f -- "$partial"
    exit 1
}

folder_problem="$(cloudops_change_folder "$root" "$workdir" "$change")"
case $? in
    0) ;;
    2) refuse "$folder_problem. Nothing was staged." ;;
    *) fail "$folder_problem" ;;
esac
partial="$(cloudops_temp_file "$change_dir" patchme.sh)" ||
    fail "could not create a file for patchme.sh in $workdir/$change"

previous=""
if [ -f "$patchme" ] && [ ! -L "$patchme" ]; then
    previous="$(sed -n 's/^newkernel="\([^"]*\)"$/\1/p' "$patchme" | head -n 1)"
fi

{
    printf '#!/bin/bash\n'
    printf '# Staged by CloudOps linux-qc-patching-prep for change %s at %s.\n' "$change" "$staged_at"
    printf '# Run by the SSM agent in the patch window (AWS-RunShellScript), it installs the kernel\n'
    printf '# below, makes it the default boot entry and exits 194: the agent reboots the server and\n'
    printf '# runs it again, which reports the kernel it booted. Run by hand, reboot when it exits\n'
    printf '# 194 and run it again. It reboots at most once per change.\n'
    printf 'newkernel="%s"\n' "$new_kernel"
    printf 'export CHANGE_NUMBER="%s"\n' "$change"
    printf 'export WORKDIR="%s"\n' "$workdir"
    printf '# The rest is linux/window_install.sh of CloudOps flows (its own comments say how it works).\n'
    # The body without its shebang and its leading comment block, so patchme.sh stays small
    # enough for the final report to read it back whole.
    printf '%s\n' "$patchme_body" | awk 'NR == 1 { next } !body && /^#/ { next } { body = 1; print }'
} >"$partial" 2>/dev/null || fail "could not write $partial"

bash -n "$partial" || fail "the patchme.sh written for $new_kernel does not parse; nothing staged"
chmod 700 -- "$partial" || fail "could not make $partial executable"
mv -fT -- "$partial" "$patchme" || fail "could not save $workdir/$change/patchme.sh"
partial=""

if [ -n "$previous" ] && [ "$previous" != "$new_kernel" ]; then
    echo "Staged kernel $new_kernel for change $change in $workdir/$change/patchme.sh (replaces the earlier target $previous). Nothing was installed and nothing rebooted."
else
    echo "Staged kernel $new_kernel for change $change in $workdir/$change/patchme.sh. Nothing was installed and nothing rebooted."
fi
echo "----- BEGIN patchme.sh -----"
cat "$patchme"
echo "----- END patchme.sh -----"
exit 0
