#!/bin/bash
# Prints what the prep flow left on this server for a change, for its final report: the QC
# report ($WORKDIR/$CHANGE_NUMBER/qc_report.txt) and the staged patchme.sh (one staged by prep
# up to the window_install.sh body it carries, then that body's size and sha256). Read-only.
#
# Each file is printed between its own markers, which the flow's parser looks for:
#   ----- BEGIN CLOUDOPS FILE qc_report.txt -----
#   ...the file...
#   ----- END CLOUDOPS FILE qc_report.txt -----
# A file that is not there is one line: ----- CLOUDOPS FILE patchme.sh MISSING -----
# A file longer than MAX_FILE_BYTES is cut there (SSM returns at most 24,000 characters of
# output) and the line ----- CLOUDOPS FILE <name> TRUNCATED ----- comes before its END marker.
#
# Parameters (environment variables, set by the flow's quoted header):
#   CHANGE_NUMBER    change ticket, 1-50 of A-Z a-z 0-9 _ - (required)
#   WORKDIR          absolute directory that holds the change folder (default /root)
#   MAX_FILE_BYTES   most bytes printed of each file (default 10000)
#
# Exit status: 0 when the files were looked for (missing ones are in the output), 2 when a
# parameter is refused, or the change folder or one of its files is not what prep left there
# (a symbolic link, another user's folder: printing it could put any file of the server in
# the flow's reports; see the library below).
#
# Every absolute path goes through $CLOUDOPS_ROOT (empty on a real server) so that the tests can
# run this script for real in a sandbox.
set -u

# cloudops-include: change_folder.sh

root="${CLOUDOPS_ROOT:-}"
change="${CHANGE_NUMBER:-}"
workdir="${WORKDIR:-/root}"
max_bytes="${MAX_FILE_BYTES:-10000}"

refuse() {
    echo "collect_prep_reports.sh refused to run: $1" >&2
    exit 2
}

[[ "$change" =~ ^[A-Za-z0-9_-]{1,50}$ ]] ||
    refuse "CHANGE_NUMBER must be 1 to 50 letters, digits, '-' or '_'. Fix the change number."
[[ "$workdir" =~ ^/[A-Za-z0-9._/-]{0,200}$ && "/$workdir/" != */../* ]] ||
    refuse "WORKDIR must be an absolute path of letters, digits, '.', '_', '-' and '/' without '..'."
[[ "$max_bytes" =~ ^[0-9]{1,5}$ && "$max_bytes" -gt 0 ]] ||
    refuse "MAX_FILE_BYTES must be a whole number of bytes up to 99999, such as 10000."

change_dir="$root$workdir/$change"

# An unusable folder (a file of that name) only means the files are missing; an unsafe one
# is refused.
folder_problem="$(cloudops_folder_to_read "$root" "$workdir" "$change")"
[ $? != 2 ] || refuse "$folder_problem. Nothing was read."
for name in qc_report.txt patchme.sh; do
    if [ -L "$change_dir/$name" ]; then
        refuse "$workdir/$change/$name is a symbolic link, not the file prep wrote. Nothing was read."
    fi
done

# The line after which a patchme.sh staged by prep holds the body of linux/window_install.sh:
# the same on every server, so only its size and digest are printed, not its text.
staged_body_line="# The rest is linux/window_install.sh of CloudOps flows (its own comments say how it works)."

# The text of file $1 as the report shows it: a staged patchme.sh up to its body, then one line
# naming the body; any other file whole.
file_text() {
    local path="$1" body_bytes digest
    if [ "${path##*/}" != patchme.sh ] || ! grep -qxF -- "$staged_body_line" "$path"; then
        cat -- "$path"
        return
    fi
    awk -v line="$staged_body_line" '{ print } $0 == line { exit }' "$path"
    body_bytes="$(awk -v line="$staged_body_line" 'after { print } $0 == line { after = 1 }' "$path" | wc -c | tr -d ' ')"
    digest="$(awk -v line="$staged_body_line" 'after { print } $0 == line { after = 1 }' "$path" | sha256sum | cut -c 1-64)"
    echo "# (body not shown: $body_bytes bytes, sha256 $digest)"
}

print_file() {
    local name="$1" path="$change_dir/$1" size
    if [ ! -f "$path" ] || [ ! -r "$path" ]; then
        echo "----- CLOUDOPS FILE $name MISSING -----"
        return
    fi
    size="$(file_text "$path" | wc -c | tr -d ' ')"
    echo "----- BEGIN CLOUDOPS FILE $name -----"
    file_text "$path" | head -c "$max_bytes"
    # The END marker must start its own line even when the file does not end in a newline.
    if [ "$size" -gt 0 ] && [ -n "$(file_text "$path" | head -c "$max_bytes" | tail -c 1 | tr -d '\n')" ]; then
        echo
    fi
    if [ "$size" -gt "$max_bytes" ]; then
        echo "----- CLOUDOPS FILE $name TRUNCATED -----"
    fi
    echo "----- END CLOUDOPS FILE $name -----"
}

print_file qc_report.txt
print_file patchme.sh
exit 0
