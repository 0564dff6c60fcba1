# shellcheck shell=bash
# --- cloudops library: the SFT enrollment token (flows/scripts/linux/lib/sft_token.sh) -------
# The flow renders this into sft_install.sh and sft_reset.sh at their "cloudops-include" line.
# It reads the token at run time from where the flow says (SFT_TOKEN_SOURCE / SFT_TOKEN_NAME,
# read by the including script into token_source and token_name) into the shell variable
# enrollment_token; the token is never in the command, a script file or an environment.
# The including script defines refuse CODE MESSAGE (print SFT_ACTION_RESULT=failed:CODE,
# exit 2: nothing changed).

# Read the enrollment token where the flow said it is, into the shell variable
# enrollment_token only: it is never an argument of a command, never in the environment of one,
# never printed. The AWS CLI is given the parameter's (or secret's) name and prints the value
# on its stdout, which the command substitution keeps; its errors name the parameter, not the
# value. Returns 1 when the token could not be read.
read_enrollment_token() {
    local region_args=()
    if [ -n "${AWS_SSM_REGION_NAME:-}" ]; then
        region_args=(--region "$AWS_SSM_REGION_NAME")
    fi
    enrollment_token=""
    case "$token_source" in
    parameter-store)
        enrollment_token="$(aws ssm get-parameter --name "$token_name" --with-decryption \
            --query Parameter.Value --output text ${region_args[@]+"${region_args[@]}"})"
        ;;
    secrets-manager)
        enrollment_token="$(aws secretsmanager get-secret-value --secret-id "$token_name" \
            --query SecretString --output text ${region_args[@]+"${region_args[@]}"})"
        ;;
    file)
        # A regular file only: never follow a link someone else may have planted. All of it,
        # so that a second line is refused with the token, not silently dropped.
        [ -f "$token_name" ] && [ ! -L "$token_name" ] && enrollment_token="$(<"$token_name")"
        ;;
    *) return 1 ;;
    esac
}

# Where the token is to be read: a known source and a name of plain characters. Exit 2 when
# not, before anything is read or changed.
check_token_source() {
    case "$token_source" in
    parameter-store | secrets-manager | file) ;;
    *)
        refuse missing_enrollment_token "no enrollment token source was given (SFT_TOKEN_SOURCE \
is '$token_source'; expected parameter-store, secrets-manager or file): run this script \
through the sft-fixer flow. Nothing was changed."
        ;;
    esac
    if [[ ! "$token_name" =~ ^[A-Za-z0-9/_.:@+=-]{1,2048}$ ]]; then
        refuse missing_enrollment_token "SFT_TOKEN_NAME does not name a parameter, secret or \
file: run this script through the sft-fixer flow. Nothing was changed."
    fi
    if [ "$token_source" != file ] && ! command -v aws >/dev/null 2>&1; then
        refuse no_aws_cli "the AWS CLI (aws) was not found: it reads the enrollment token from \
$token_source ($token_name); install it. Nothing was changed."
    fi
    if ! read_enrollment_token; then
        refuse token_unreadable "the enrollment token could not be read from $token_source \
($token_name); see the error above. The instance profile needs to read it (ssm:GetParameter \
and kms:Decrypt, see SECURITY.md). Nothing was changed."
    fi
}

check_enrollment_token() {
    if [ -z "$enrollment_token" ]; then
        refuse missing_enrollment_token "the enrollment token read from $token_source \
($token_name) is empty; save the token there again. Nothing was changed."
    fi
    case "$enrollment_token" in
    *[[:space:][:cntrl:]]*)
        refuse invalid_enrollment_token "the enrollment token contains spaces, line breaks or \
control characters; copy it again from the ASA project's Enrollment tab. Nothing was changed."
        ;;
    esac
}
