# shellcheck shell=bash
# --- cloudops library: safe folders (flows/scripts/linux/lib/change_folder.sh) --------------
# The flow renders this in front of every script that writes in <workdir>/<change> on an
# instance (remote_scripts.load_script, at the script's "cloudops-include" line).
#
# The scripts run as root. A folder that another local user could swap, link or write into
# would let that user make root overwrite, chmod or run a file of their choosing (a link
# planted at <workdir>/<change>/linux_patcher.sh.part, say). So:
#   - every directory on the way to the work directory belongs to root (to the user the
#     script runs as, in the tests' sandboxes) and is writable by others only with the
#     sticky bit, as /tmp is;
#   - the work directory and the change folder are no symbolic links, belong to that user
#     and are not writable by every user; the change folder is created 0700;
#   - files are written to a new mktemp file in the change folder and then renamed over
#     their name: a link planted there is replaced, never followed.
# Needs bash, stat, id, mktemp and mv (GNU coreutils, as on every supported distribution).

cloudops_uid="$(id -u)"

# "<owner uid> <octal mode> <kind>" of $1, following a link only when $2 is "-L".
cloudops_path_info() {
    if [ "${2:-}" = "-L" ]; then
        stat -L -c '%u %a %F' -- "$1" 2>/dev/null
    else
        stat -c '%u %a %F' -- "$1" 2>/dev/null
    fi
}

# Prints why the existing path $1 (shown as $2) cannot be this script's folder, and returns
# 2 when it is unsafe, 1 when it is merely unusable (not a directory); 0 when it is fine.
cloudops_own_folder_problem() {
    local uid mode kind
    if [ -L "$1" ]; then
        echo "$2 is a symbolic link; give a real directory owned by $(id -un)"
        return 2
    fi
    read -r uid mode kind <<<"$(cloudops_path_info "$1")"
    if [ "$kind" != "directory" ]; then
        echo "$2 is not a directory"
        return 1
    fi
    if [ "$uid" != "$cloudops_uid" ]; then
        echo "$2 belongs to uid $uid, not to $(id -un) (uid $cloudops_uid), the user this script runs as"
        return 2
    fi
    if ((8#$mode & 8#002)); then
        echo "$2 is writable by every user (mode $mode); use a directory only $(id -un) can write"
        return 2
    fi
    return 0
}

# Prints why a directory on the way to the work directory ($1, shown as $2) would let another
# user swap what lies below it; returns 2 then, 1 when it is no directory, 0 when it is fine.
cloudops_ancestor_problem() {
    local uid mode kind
    if [ -L "$1" ]; then
        read -r uid mode kind <<<"$(cloudops_path_info "$1")"
        if [ "$uid" != 0 ] && [ "$uid" != "$cloudops_uid" ]; then
            echo "$2 is a symbolic link that belongs to uid $uid"
            return 2
        fi
    fi
    read -r uid mode kind <<<"$(cloudops_path_info "$1" -L)"
    if [ "$kind" != "directory" ]; then
        echo "$2 is not a directory"
        return 1
    fi
    if [ "$uid" != 0 ] && [ "$uid" != "$cloudops_uid" ]; then
        echo "$2 belongs to uid $uid; the directories above the work directory must belong to root"
        return 2
    fi
    if ((8#$mode & 8#002)) && ! ((8#$mode & 8#1000)); then
        echo "$2 is writable by every user without the sticky bit (mode $mode)"
        return 2
    fi
    return 0
}

# Checks the directories from the server's / down to the work directory $2 (under the root $1,
# empty on a real server), and the work directory itself when it exists; $3 names it in the
# message (default "the work directory $2"). Prints the problem; returns 2 for an unsafe
# directory, 1 for an unusable one, 0 when all is well.
cloudops_workdir_problem() {
    local root="$1" workdir="$2" label="${3:-the work directory $2}" path="$1" shown="" part
    local status=0
    local -a parts
    IFS=/ read -r -a parts <<<"${workdir#/}"
    for part in "${parts[@]}"; do
        [ -n "$part" ] || continue
        if [ -n "$shown" ] && [ ! -e "$path" ] && [ ! -L "$path" ]; then
            return 0 # the rest does not exist yet: it is created 0700 by this user
        fi
        if [ -n "$shown" ]; then
            cloudops_ancestor_problem "$path" "$shown" || return
        fi
        path="$path/$part"
        shown="$shown/$part"
    done
    if [ -e "$path" ] || [ -L "$path" ]; then
        cloudops_own_folder_problem "$path" "$label" || status=$?
    fi
    return "$status"
}

# Makes the change folder $1$2/$3 ready for this script's files: checks the way to it,
# creates what is missing (0700) and checks the result again. Prints the problem and returns
# 2 for an unsafe folder (refuse to run), 1 for one that could not be made; 0 when ready.
cloudops_change_folder() {
    local root="$1" workdir="$2" change="$3" folder="$1$2/$3" status=0
    cloudops_workdir_problem "$root" "$workdir" || return
    if [ ! -e "$root$workdir" ] && ! (umask 077 && mkdir -p -- "$root$workdir") 2>/dev/null; then
        echo "could not create the work directory $workdir"
        return 1
    fi
    cloudops_own_folder_problem "$root$workdir" "the work directory $workdir" || return
    if [ -e "$folder" ] || [ -L "$folder" ]; then
        cloudops_own_folder_problem "$folder" "the change folder $workdir/$change" || status=$?
        if [ "$status" = 1 ]; then
            echo "could not create the change folder $workdir/$change: something else has that name"
        fi
        [ "$status" = 0 ] || return "$status"
        chmod 700 -- "$folder" || {
            echo "could not make the change folder $workdir/$change private (chmod 700)"
            return 1
        }
    elif ! mkdir -m 700 -- "$folder" 2>/dev/null; then
        echo "could not create the change folder $workdir/$change"
        return 1
    fi
    # Checked again once it exists: nobody may have slipped in between the check and mkdir.
    cloudops_own_folder_problem "$folder" "the change folder $workdir/$change"
}

# Checks the change folder $1$2/$3 before this script reads from it, without creating
# anything; a missing folder is fine (its files are reported missing). Prints the problem and
# returns 2 when it is unsafe, 1 when unusable, 0 when it may be read.
cloudops_folder_to_read() {
    local root="$1" workdir="$2" change="$3"
    cloudops_workdir_problem "$root" "$workdir" || return
    if [ -e "$root$workdir/$change" ] || [ -L "$root$workdir/$change" ]; then
        cloudops_own_folder_problem "$root$workdir/$change" "the change folder $workdir/$change"
    fi
}

# A new empty file in folder $1 for the content of file $2, made by mktemp (O_EXCL, mode 0600):
# nothing planted in the folder can be opened in its place. Prints its path.
cloudops_temp_file() {
    mktemp -- "$1/.$2.XXXXXX"
}

# Writes what comes on stdin to $1 (in a folder made ready above) with mode $2 (default 600):
# into a new temporary file first, then renamed over $1, which replaces a link, never follows it.
cloudops_write_file() {
    local target="$1" mode="${2:-600}" tmp
    tmp="$(cloudops_temp_file "${target%/*}" "${target##*/}")" || return 1
    if cat >"$tmp" && chmod "$mode" -- "$tmp" && mv -fT -- "$tmp" "$target"; then
        return 0
    fi
    rm -f -- "$tmp"
    return 1
}
# --- end of the cloudops library ----------------------------------------------------------
