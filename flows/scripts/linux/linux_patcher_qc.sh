#!/bin/bash
# Runs the team's external Linux Patcher in QC mode instead of our own engine (linux/qc.sh).
#
# Downloads the patcher into the change folder, checks that what arrived is a non-empty shell
# script that bash can parse (and matches PATCHER_SHA256 when given), runs it in QC mode and tees
# its report into $WORKDIR/$CHANGE_NUMBER/qc_report.txt. The flow reads the output with the same
# parser as our engine's. A "----- CLOUDOPS FACTS -----" block follows, with the distribution
# from /etc/os-release, because the patcher's report has no distribution line.
#
# Parameters (environment variables, set by the flow's quoted header):
#   CHANGE_NUMBER             change ticket, 1-50 of A-Z a-z 0-9 _ - (required)
#   WORKDIR                   absolute directory that holds the change folder (default /root)
#   PATCHER_URL               where the patcher is: https://host/path (curl, else wget) or
#                             s3://bucket/key (`aws s3 cp` with the instance's role; set
#                             AWS_DEFAULT_REGION for a bucket in another region) (required)
#   PATCHER_ARGS              how the patcher is told to do QC only (default "-q"). Split on
#                             spaces into separate arguments and never evaluated by a shell;
#                             letters, digits, spaces and - _ . = , / : only. Check the QC switch
#                             of the patcher version you point at; the wrong switch may patch.
#   PATCHER_SHA256            optional sha256 of the patcher; the run is refused on a mismatch
#   PATCHER_TIMEOUT_SECONDS   limit for the patcher's run (default 1800)
#
# Exit status: the patcher's own exit status once it ran; 2 when a parameter or the change
# folder is refused (see the library below), 3 when the download or its checks failed (the
# patcher is not run then).
#
# Every absolute path goes through $CLOUDOPS_ROOT (empty on a real server) so that the tests can
# run this script for real in a sandbox.
set -u
umask 077 # what this script creates is root's alone: it downloads a script that root runs

# cloudops-include: change_folder.sh

root="${CLOUDOPS_ROOT:-}"
change="${CHANGE_NUMBER:-}"
workdir="${WORKDIR:-/root}"
url="${PATCHER_URL:-}"
# Empty counts as unset: running the patcher with no QC switch could start real patching.
patcher_args="${PATCHER_ARGS:--q}"
expected_sha256="${PATCHER_SHA256:-}"
patcher_timeout="${PATCHER_TIMEOUT_SECONDS:-1800}"

refuse() {
    echo "linux_patcher_qc.sh refused to run: $1" >&2
    exit 2
}

partial=""
fail_download() {
    echo "linux_patcher_qc.sh: $1" >&2
    [ -z "$partial" ] || rm -f -- "$partial"
    exit 3
}

[[ "$change" =~ ^[A-Za-z0-9_-]{1,50}$ ]] ||
    refuse "CHANGE_NUMBER must be 1 to 50 letters, digits, '-' or '_'. Fix the change number."
[[ "$workdir" =~ ^/[A-Za-z0-9._/-]{0,200}$ && "/$workdir/" != */../* ]] ||
    refuse "WORKDIR must be an absolute path of letters, digits, '.', '_', '-' and '/' without '..'."
[[ "$url" =~ ^(https|s3)://[A-Za-z0-9._~/?\&=%+,:@-]{1,1000}$ ]] ||
    refuse "PATCHER_URL must be an https:// or s3:// location without spaces or quotes."
[[ "$patcher_args" =~ ^[A-Za-z0-9\ _.=,/:-]{0,200}$ ]] ||
    refuse "PATCHER_ARGS may hold only letters, digits, spaces and - _ . = , / : (e.g. -q)."
[[ -z "$expected_sha256" || "$expected_sha256" =~ ^[0-9a-fA-F]{64}$ ]] ||
    refuse "PATCHER_SHA256 must be 64 hexadecimal digits."
[[ "$patcher_timeout" =~ ^[0-9]{1,6}$ && "$patcher_timeout" -gt 0 ]] ||
    refuse "PATCHER_TIMEOUT_SECONDS must be a whole number of seconds, such as 1800."

# A presigned https URL carries its signature in the query string: messages show the URL
# without it.
shown_url="${url%%\?*}"
change_dir="$root$workdir/$change"
patcher="$change_dir/linux_patcher.sh"
report_file="$change_dir/qc_report.txt"

one_line() {
    printf '%s' "$1" | tr '\n\t' '  ' | tr -d '\000-\037\177'
}

os_release_value() {
    local value
    value="$(sed -n "s/^$1=//p" "$root/etc/os-release" 2>/dev/null | head -n 1)"
    value="${value#\"}"
    value="${value%\"}"
    value="${value#\'}"
    value="${value%\'}"
    one_line "$value"
}

folder_problem="$(cloudops_change_folder "$root" "$workdir" "$change")"
case $? in
    0) ;;
    2) refuse "$folder_problem. Nothing was downloaded or run." ;;
    *) fail_download "$folder_problem" ;;
esac
# The download lands in a new file of its own; a link planted under any name is never opened.
partial="$(cloudops_temp_file "$change_dir" linux_patcher.sh)" ||
    fail_download "could not create a file for the download in $workdir/$change"

case "$url" in
    https://*)
        if command -v curl >/dev/null 2>&1; then
            curl -fsSL --proto '=https' --proto-redir '=https' --retry 3 --max-time 300 -o "$partial" "$url" ||
                fail_download "curl could not download the patcher from $shown_url"
        elif command -v wget >/dev/null 2>&1; then
            wget -q --https-only --tries=3 --timeout=60 -O "$partial" "$url" ||
                fail_download "wget could not download the patcher from $shown_url"
        else
            fail_download "neither curl nor wget is installed, so $shown_url cannot be downloaded"
        fi
        ;;
    s3://*)
        command -v aws >/dev/null 2>&1 ||
            fail_download "the AWS CLI is not installed, so $shown_url cannot be downloaded"
        aws s3 cp --only-show-errors "$url" "$partial" ||
            fail_download "aws s3 cp could not download $shown_url (does the instance role allow s3:GetObject?)"
        ;;
esac

[ -s "$partial" ] || fail_download "the patcher downloaded from $shown_url is empty"
first_line="$(head -n 1 "$partial" | cut -c 1-80)"
# An error page or a wrong object saved under the script's name must never be executed.
[[ "$first_line" =~ ^\#!.*(/|env\ )(ba)?sh([[:space:]]|$) ]] ||
    fail_download "what $shown_url returned is not a shell script (first line: $(one_line "$first_line"))"
bash -n "$partial" 2>/dev/null ||
    fail_download "the patcher downloaded from $shown_url has bash syntax errors; check the file"
if [ -n "$expected_sha256" ]; then
    actual_sha256="$(sha256sum "$partial" | awk '{ print $1 }')"
    [ "${actual_sha256,,}" = "${expected_sha256,,}" ] ||
        fail_download "the patcher from $shown_url has sha256 $actual_sha256, not the expected $expected_sha256"
fi
if ! { chmod 700 -- "$partial" && mv -fT -- "$partial" "$patcher"; }; then
    fail_download "could not save the patcher as $workdir/$change/linux_patcher.sh"
fi
partial=""

read -r -a qc_args <<<"$patcher_args"
echo "Running the Linux Patcher in QC mode: $patcher ${qc_args[*]}" >&2
cd "$change_dir" || fail_download "could not enter $change_dir"
report_partial="$(cloudops_temp_file "$change_dir" qc_report.txt)" ||
    fail_download "could not create a file for the report in $workdir/$change"
if command -v timeout >/dev/null 2>&1; then
    timeout "$patcher_timeout" bash "$patcher" "${qc_args[@]}" 2>&1 | tee "$report_partial"
else
    bash "$patcher" "${qc_args[@]}" 2>&1 | tee "$report_partial"
fi
patcher_status="${PIPESTATUS[0]}"
if ! mv -fT -- "$report_partial" "$report_file" 2>/dev/null; then
    rm -f -- "$report_partial"
    echo "linux_patcher_qc.sh: the report was printed but not saved as $workdir/$change/qc_report.txt" >&2
fi

if command -v dnf >/dev/null 2>&1; then
    pkg_manager="dnf"
elif command -v yum >/dev/null 2>&1; then
    pkg_manager="yum"
elif command -v apt-get >/dev/null 2>&1; then
    pkg_manager="apt"
else
    pkg_manager="none"
fi

echo "----- CLOUDOPS FACTS -----"
echo "OS_ID=$(os_release_value ID)"
echo "OS_VERSION_ID=$(os_release_value VERSION_ID)"
echo "OS_PRETTY_NAME=$(os_release_value PRETTY_NAME)"
echo "PKG_MANAGER=$pkg_manager"
echo "QC_ENGINE=linux-patcher"
echo "PATCHER_EXIT_CODE=$patcher_status"
echo "REPORT_FILE=$workdir/$change/qc_report.txt"
echo "----- END CLOUDOPS FACTS -----"
exit "$patcher_status"
