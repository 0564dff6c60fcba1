#!/bin/bash
# Post-patching validation of one Linux server: does it run the kernel the change staged, what
# did the package manager do today, are the agents up, and is the host healthy.
#
# Read-only: it reads files and asks commands; it writes, installs, starts and stops nothing.
# Every absolute path goes through $CLOUDOPS_ROOT (empty on a real server) and every command
# comes from PATH, so the tests run it for real in a sandbox with fake commands. A missing
# command makes its fact `unknown`; it never stops the script.
#
# Parameters (environment variables, set by the quoted header of flows/common/remote_scripts.py):
#   CHANGE_NUMBER         the change ticket; locates $WORKDIR/$CHANGE_NUMBER/patchme.sh
#   WORKDIR               where prep staged its files (default /root)
#   TARGET_KERNEL         optional target kernel, from the prep record or a flow parameter
#   TARGET_KERNEL_SOURCE  where TARGET_KERNEL came from: `prep` or `parameter` (default)
# The `newkernel="..."` line of patchme.sh, when there is one, wins over TARGET_KERNEL.
#
# Output: the human report, then a block that flows/linux_patching/post_check.py reads:
#   ----- CLOUDOPS POST SUMMARY BEGIN -----
#   KEY=value     one per line; values only use [A-Za-z0-9._:/@+,%~-] (no tilde where a
#                 shell would expand it), so the block is shell-safe; lists are
#                 comma-separated (empty: none); an unmeasured fact is `unknown` (for the
#                 LVM lists: LVM_CHECKED=no)
#   ----- CLOUDOPS POST SUMMARY END -----
# The verdict is the parser's: this script reports facts and always exits 0 once it has.
set -u
export LC_ALL=C

root="${CLOUDOPS_ROOT:-}"
workdir="${WORKDIR:-/root}"
change="${CHANGE_NUMBER:-}"

summary_lines=()
notes=()

have() { command -v "$1" >/dev/null 2>&1; }

# Anything outside a plain character set becomes "_", so no value can break the block. A
# tilde is kept inside a value (Debian versions use it) but not where a shell would expand it.
unsafe_chars='[^A-Za-z0-9._:/@+,%~-]'
summary() {
    local value="${2//$unsafe_chars/_}"
    value="${value//:~/:_}"
    [[ "$value" == "~"* ]] && value="_${value:1}"
    summary_lines+=("$1=$value")
}

fact() { printf '(%s): %s\n' "$1" "$2"; }

first_line() {
    local value=""
    [ -r "$1" ] && IFS= read -r value <"$1"
    printf '%s' "$value"
}

join_by_comma() {
    local IFS=","
    printf '%s' "$*"
}

is_number() { [[ "$1" =~ ^[0-9]+$ ]]; }

# yum waits for its lock and LVM for a stuck device; a bound keeps the rest of the report.
bounded() {
    if have timeout; then
        timeout 120 "$@"
    else
        "$@"
    fi
}

# ----- basic facts -----
host_name=""
have hostname && host_name="$(hostname 2>/dev/null)"
[ -z "$host_name" ] && host_name="$(first_line "$root/proc/sys/kernel/hostname")"
[ -z "$host_name" ] && host_name="$(first_line "$root/etc/hostname")"
[ -z "$host_name" ] && have uname && host_name="$(uname -n 2>/dev/null)"
: "${host_name:=unknown}"

now="unknown"
today=""
if have date; then
    now="$(date '+%Y-%m-%dT%H:%M:%S%z' 2>/dev/null)"
    today="$(date '+%Y-%m-%d' 2>/dev/null)"
fi

uptime_seconds="unknown"
raw_uptime="$(first_line "$root/proc/uptime")"
raw_uptime="${raw_uptime%%[. ]*}"
is_number "$raw_uptime" && uptime_seconds="$raw_uptime"

iso_stamp='^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?$'
last_boot=""
have uptime && last_boot="$(uptime -s 2>/dev/null)"
if ! [[ "$last_boot" =~ $iso_stamp ]] && have who; then
    last_boot="$(who -b 2>/dev/null | awk '{print $(NF-1) " " $NF; exit}')"
fi
if ! [[ "$last_boot" =~ $iso_stamp ]] && is_number "$uptime_seconds" && have date; then
    last_boot="$(date -d "@$(($(date +%s) - uptime_seconds))" '+%Y-%m-%d %H:%M:%S' 2>/dev/null)"
fi
if [[ "$last_boot" =~ $iso_stamp ]]; then
    last_boot="${last_boot/ /T}"
else
    last_boot="unknown"
fi

uptime_text="unknown"
have uptime && uptime_text="$(uptime 2>/dev/null | sed 's/^[[:space:]]*//')"

echo "===== Post-patch QC for ${host_name} ====="
fact "Current date" "$now"
fact "Server running since" "$last_boot"
fact "Uptime" "${uptime_text:-unknown}"
summary HOSTNAME "$host_name"
summary CHECKED_AT "$now"
summary LAST_BOOT "$last_boot"
summary UPTIME_SECONDS "$uptime_seconds"

# ----- kernel against the target -----
kernel_running=""
have uname && kernel_running="$(uname -r 2>/dev/null)"
[ -z "$kernel_running" ] && kernel_running="$(first_line "$root/proc/sys/kernel/osrelease")"
: "${kernel_running:=unknown}"

# Only plain package/kernel names are accepted as a target; anything else is reported, not used.
kernel_name='^[A-Za-z0-9._+:~-]{1,200}$'
kernel_target=""
kernel_target_source="none"
if [[ "$change" =~ ^[A-Za-z0-9_-]{1,50}$ ]] && [[ "$workdir" == /* ]]; then
    patchme="$root$workdir/$change/patchme.sh"
    if [ -r "$patchme" ]; then
        newkernel_line='^[[:space:]]*(export[[:space:]]+)?newkernel=["'"'"']?([^"'"'"'[:space:]]*)'
        staged=""
        while IFS= read -r text || [ -n "$text" ]; do
            if [[ "$text" =~ $newkernel_line ]]; then
                staged="${BASH_REMATCH[2]}"
                break
            fi
        done <"$patchme"
        if [[ "$staged" =~ $kernel_name ]]; then
            kernel_target="$staged"
            kernel_target_source="patchme"
        else
            notes+=("$workdir/$change/patchme.sh has no usable newkernel= line")
        fi
    else
        notes+=("no patchme.sh at $workdir/$change/patchme.sh")
    fi
else
    notes+=("CHANGE_NUMBER or WORKDIR not given or not valid: patchme.sh not looked up")
fi
if [ -z "$kernel_target" ] && [ -n "${TARGET_KERNEL:-}" ]; then
    if [[ "$TARGET_KERNEL" =~ $kernel_name ]]; then
        kernel_target="$TARGET_KERNEL"
        case "${TARGET_KERNEL_SOURCE:-parameter}" in
            prep) kernel_target_source="prep" ;;
            *) kernel_target_source="parameter" ;;
        esac
    else
        notes+=("TARGET_KERNEL is not a plain kernel name and was ignored")
    fi
fi

fact "Current running kernel version" "$kernel_running"
fact "Target kernel version" "${kernel_target:-none known} (source: $kernel_target_source)"
summary KERNEL_RUNNING "$kernel_running"
summary KERNEL_TARGET "$kernel_target"
summary KERNEL_TARGET_SOURCE "$kernel_target_source"

# ----- package activity today -----
pkg_manager="unknown"
pkg_today="unknown"
pkg_ids=()
pkg_lines=()
if [ -z "$today" ]; then
    notes+=("date is not available: package activity today not counted")
elif have dnf || have yum; then
    # -C and --noplugins keep it local: no metadata download, no subscription call-outs.
    if have dnf; then
        pkg_manager="dnf"
        history_out="$(bounded dnf -C --noplugins history list 2>/dev/null)"
    else
        pkg_manager="yum"
        history_out="$(bounded yum -C --noplugins history list all 2>/dev/null)"
    fi
    history_status=$?
    if [ "$history_status" -eq 0 ] || [ -n "$history_out" ]; then
        # A transaction row starts with its numeric id and carries its date and time.
        while IFS= read -r row; do
            [ -z "$row" ] && continue
            pkg_lines+=("$(printf '%s' "$row" | tr -s ' ')")
            pkg_ids+=("$(printf '%s' "$row" | awk '{print $1}')")
        done < <(printf '%s\n' "$history_out" | awk -v d="$today" '$1 ~ /^[0-9]+$/ && index($0, d)')
        pkg_today="${#pkg_ids[@]}"
    else
        notes+=("$pkg_manager history could not be read")
    fi
elif have dpkg-query || [ -d "$root/var/log/apt" ]; then
    pkg_manager="apt"
    apt_log="$root/var/log/apt/history.log"
    if [ -r "$apt_log" ]; then
        # One transaction per "Start-Date:" stanza; its Commandline says what was run.
        pkg_today=0
        while IFS= read -r row; do
            pkg_lines+=("$row")
            [[ "$row" == Start-Date:* ]] && pkg_today=$((pkg_today + 1))
        done < <(awk -v d="$today" '
            /^Start-Date:/ { today = ($2 == d); if (today) print "Start-Date: " $2 " " $3 }
            today && /^Commandline:/ { print "  " $0 }' "$apt_log")
    elif [ -e "$apt_log" ]; then
        notes+=("/var/log/apt/history.log is not readable")
    else
        pkg_today="0"
    fi
fi

fact "Package manager" "$pkg_manager"
fact "Package transactions today" "$pkg_today"
for row in ${pkg_lines[@]+"${pkg_lines[@]}"}; do
    echo "    $row"
done
summary PKG_MANAGER "$pkg_manager"
summary PKG_TRANSACTIONS_TODAY "$pkg_today"
summary PKG_TRANSACTION_IDS "$(join_by_comma ${pkg_ids[@]+"${pkg_ids[@]}"})"

# ----- agents -----
# installed = a package is present or systemd knows the unit; running = the unit is active.
# A unit that exists but is stopped is "stopped", never "not installed".
agent_state() {
    local unit="$1"
    shift
    local installed="no" asked="no" active="" pkg load
    for pkg in "$@"; do
        if have rpm; then
            asked="yes"
            rpm -q --quiet "$pkg" >/dev/null 2>&1 && installed="yes"
        fi
        if have dpkg-query; then
            asked="yes"
            dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q ' installed$' &&
                installed="yes"
        fi
    done
    if have systemctl; then
        asked="yes"
        load="$(systemctl show -p LoadState "$unit.service" 2>/dev/null)"
        case "$load" in
            LoadState=loaded | LoadState=masked) installed="yes" ;;
        esac
        active="$(systemctl is-active "$unit.service" 2>/dev/null)"
    fi
    if [ "$active" = "active" ] || [ "$active" = "reloading" ]; then
        echo "running"
    elif [ "$installed" = "yes" ] && have systemctl; then
        echo "stopped"
    elif [ "$installed" = "no" ] && [ "$asked" = "yes" ]; then
        echo "not_installed"
    else
        echo "unknown"
    fi
}

agent_report() {
    local label="$1" key="$2" unit="$3"
    shift 3
    local state
    state="$(agent_state "$unit" "$@")"
    case "$state" in
        running) fact "$label ($unit)" "running" ;;
        stopped) fact "$label ($unit)" "installed, not running" ;;
        not_installed) fact "$label ($unit)" "not installed" ;;
        *) fact "$label ($unit)" "unknown (no rpm, dpkg-query or systemctl to ask)" ;;
    esac
    summary "AGENT_$key" "$state"
}

agent_report "CrowdStrike" FALCON_SENSOR falcon-sensor falcon-sensor
agent_report "BigFix" BESCLIENT besclient BESAgent
agent_report "EnCase" ENLINUXPC enlinuxpc enlinuxpc
agent_report "ScaleFT" SFTD sftd scaleft-server-tools

# ----- disk -----
disk_use() {
    # Prints "<percent> <mount point>" for the filesystem holding $1, or nothing.
    have df || return 0
    df -P "$1" 2>/dev/null | awk 'NR == 2 { sub(/%$/, "", $5); print $5, $6 }'
}

root_use="$(disk_use "$root/")"
root_pct="${root_use%% *}"
is_number "$root_pct" || root_pct="unknown"
boot_pct="unknown"
boot_mount="unknown"
if [ -e "$root/boot" ]; then
    boot_use="$(disk_use "$root/boot")"
    boot_pct="${boot_use%% *}"
    is_number "$boot_pct" || boot_pct="unknown"
    [ "$boot_pct" != "unknown" ] && boot_mount="${boot_use#* }"
else
    notes+=("/boot does not exist")
fi
fact "Disk used on /" "${root_pct}%"
fact "Disk used on /boot" "${boot_pct}% (filesystem mounted on ${boot_mount})"
summary DISK_ROOT_USED_PCT "$root_pct"
summary DISK_BOOT_USED_PCT "$boot_pct"
summary DISK_BOOT_MOUNT "$boot_mount"

# ----- LVM -----
# --readonly reads the metadata without taking locks, so even lock files are not created.
# Missing PVs: the third pv_attr character is "m". Inactive LVs: the fifth lv_attr character
# (state) is "-". Both come from the attribute columns, never from free text.
lvm_checked="no"
missing_pvs=()
inactive_lvs=()
pv_count="unknown"
lv_count="unknown"
if have pvs && have lvs; then
    lvm_options=(--readonly --noheadings --separator '|')
    if pv_out="$(bounded pvs "${lvm_options[@]}" -o pv_name,vg_name,pv_attr,pv_uuid 2>/dev/null)" &&
        lv_out="$(bounded lvs "${lvm_options[@]}" -o lv_name,vg_name,lv_attr 2>/dev/null)"; then
        lvm_checked="yes"
        while IFS= read -r pv; do
            [ -n "$pv" ] && missing_pvs+=("$pv")
        done < <(printf '%s\n' "$pv_out" | awk -F'|' '
            { for (i = 1; i <= NF; i++) gsub(/^[ \t]+|[ \t]+$/, "", $i) }
            NF >= 3 && substr($3, 3, 1) == "m" {
                print (($1 == "" || $1 ~ /unknown/) ? "uuid:" $4 : $1)
            }')
        while IFS= read -r lv; do
            [ -n "$lv" ] && inactive_lvs+=("$lv")
        done < <(printf '%s\n' "$lv_out" | awk -F'|' '
            { for (i = 1; i <= NF; i++) gsub(/^[ \t]+|[ \t]+$/, "", $i) }
            NF >= 3 && substr($3, 5, 1) == "-" { print $2 "/" $1 }')
        pv_count="$(printf '%s\n' "$pv_out" | awk -F'|' 'NF >= 3 { n++ } END { print n + 0 }')"
        lv_count="$(printf '%s\n' "$lv_out" | awk -F'|' 'NF >= 3 { n++ } END { print n + 0 }')"
    else
        notes+=("pvs/lvs failed: LVM state unknown")
    fi
else
    notes+=("pvs/lvs not available: LVM state unknown")
fi
missing_text="$(join_by_comma ${missing_pvs[@]+"${missing_pvs[@]}"})"
inactive_text="$(join_by_comma ${inactive_lvs[@]+"${inactive_lvs[@]}"})"
if [ "$lvm_checked" = "yes" ]; then
    fact "LVM physical volumes" "$pv_count, missing: ${missing_text:-none}"
    fact "LVM logical volumes" "$lv_count, inactive: ${inactive_text:-none}"
else
    fact "LVM" "unknown"
fi
summary LVM_CHECKED "$lvm_checked"
summary LVM_PV_COUNT "$pv_count"
summary LVM_LV_COUNT "$lv_count"
summary LVM_MISSING_PVS "$missing_text"
summary LVM_INACTIVE_LVS "$inactive_text"

# ----- health -----
mem_total="unknown"
mem_available="unknown"
if have free; then
    read -r free_total free_available < <(free -m 2>/dev/null |
        awk '/^Mem:/ { print $2, (NF >= 7 ? $7 : $4); exit }')
    is_number "${free_total:-}" && mem_total="$free_total"
    is_number "${free_available:-}" && mem_available="$free_available"
fi
if [ "$mem_total" = "unknown" ] && [ -r "$root/proc/meminfo" ]; then
    read -r info_total info_available < <(awk '
        $1 == "MemTotal:" { t = int($2 / 1024) }
        $1 == "MemAvailable:" { a = int($2 / 1024) }
        $1 == "MemFree:" { f = int($2 / 1024) }
        END { print t, (a != "" ? a : f) }' "$root/proc/meminfo")
    is_number "${info_total:-}" && mem_total="$info_total"
    is_number "${info_available:-}" && mem_available="$info_available"
fi
fact "Memory" "total ${mem_total} MB, available ${mem_available} MB"
summary MEM_TOTAL_MB "$mem_total"
summary MEM_AVAILABLE_MB "$mem_available"

failed_count="unknown"
failed_units=()
if have systemctl; then
    if units_out="$(systemctl list-units --state=failed --no-legend --plain --no-pager \
        2>/dev/null)"; then
        # The unit is the first word with a unit suffix, whatever bullet precedes it.
        unit_suffix='[.](service|socket|mount|automount|swap|target|path|timer|slice|scope|device)$'
        while IFS= read -r unit; do
            [ -n "$unit" ] && failed_units+=("$unit")
        done < <(printf '%s\n' "$units_out" | awk -v suffix="$unit_suffix" '
            { for (i = 1; i <= NF; i++) if ($i ~ suffix) { print $i; break } }')
        failed_count="${#failed_units[@]}"
    fi
fi
failed_text="$(join_by_comma ${failed_units[@]+"${failed_units[@]}"})"
fact "Failed systemd units" "$failed_count${failed_text:+ ($failed_text)}"
summary FAILED_UNITS "$failed_count"
summary FAILED_UNIT_NAMES "$failed_text"

# Critical kernel messages of the current boot: priorities emerg, alert and crit.
critical_count="unknown"
critical_out=""
critical_ok="no"
if have journalctl &&
    critical_out="$(bounded journalctl -k -b -p crit -q --no-pager 2>/dev/null)"; then
    critical_ok="yes"
elif have dmesg && critical_out="$(dmesg --level=emerg,alert,crit 2>/dev/null)"; then
    critical_ok="yes"
fi
if [ "$critical_ok" = "yes" ]; then
    critical_out="$(printf '%s\n' "$critical_out" | grep -v -e '^-- ' -e '^[[:space:]]*$')"
    critical_count=0
    [ -n "$critical_out" ] && critical_count="$(printf '%s\n' "$critical_out" | grep -c '')"
fi
fact "Critical kernel messages" "$critical_count"
if [ -n "$critical_out" ]; then
    printf '%s\n' "$critical_out" | head -n 10 | sed 's/^/    /'
fi
summary CRITICAL_KERNEL_MESSAGES "$critical_count"

for note in ${notes[@]+"${notes[@]}"}; do
    fact "Note" "$note"
done

echo "----- CLOUDOPS POST SUMMARY BEGIN -----"
echo "SUMMARY_VERSION=1"
printf '%s\n' "${summary_lines[@]}"
echo "----- CLOUDOPS POST SUMMARY END -----"
exit 0
