# Reset the ScaleFT / Okta Advanced Server Access agent on Windows (service
# scaleft-server-tools) so that it enrolls again: stop it, delete its device token (its
# enrollment), write a fresh enrollment token and sftd.yaml (AccessAddress = the primary IPv4
# address), set it to start automatically and start it. Sent with AWS-RunPowerShellScript.
#
# Parameters (environment variables set by the flow's quoted header; none is the token):
#   SFT_TOKEN_SOURCE      where the enrollment token is read at run time: parameter-store (an
#                         SSM SecureString), secrets-manager, or file
#   SFT_TOKEN_NAME        the parameter's name, the secret's id or the file's path
#   The token is written to <state dir>\enrollment.token, never printed, never passed on a
#   command line.
#   SFT_STATE_DIR         optional; default is the vendor's documented state directory of the
#                         agent, which runs as LocalSystem:
#                         C:\Windows\System32\config\systemprofile\AppData\Local\scaleft
#
# Exit codes: 0 reset; 2 refused before anything was changed; 1 failed part-way.
# The last line of output is SFT_ACTION_RESULT=reset or SFT_ACTION_RESULT=failed:<reason>.
$ErrorActionPreference = 'Stop'
$serviceName = 'scaleft-server-tools'
$waitLimit = New-TimeSpan -Seconds 60

$tokenSource = $env:SFT_TOKEN_SOURCE
$tokenName = $env:SFT_TOKEN_NAME
$enrollmentToken = $null # read below, kept in this script variable only

if ($env:SFT_STATE_DIR) {
    $stateDir = $env:SFT_STATE_DIR
} else {
    $stateDir = Join-Path $env:SystemRoot 'System32\config\systemprofile\AppData\Local\scaleft'
}

function Write-Outcome([string] $Reason, [string] $Message, [int] $Code) {
    if ($enrollmentToken) {
        # A system message should never quote the token; this makes sure of it.
        $Message = $Message.Replace($enrollmentToken, '[redacted]')
    }
    [Console]::Error.WriteLine("sft_reset: $Message")
    Write-Output "SFT_ACTION_RESULT=failed:$Reason"
    exit $Code
}

# Exit 2: nothing on the host was changed.
function Stop-Refused([string] $Reason, [string] $Message) {
    Write-Outcome $Reason "$Message Nothing was changed." 2
}

# Exit 1: some changes were made before this step failed.
function Stop-Failed([string] $Reason, [string] $Message) {
    Write-Outcome $Reason $Message 1
}

# The address clients reach this host on: the source address Windows would use towards the
# internet (no packet is sent), else the address of the interface with a default gateway.
function Get-PrimaryIPv4 {
    try {
        $address = Find-NetRoute -RemoteIPAddress '1.1.1.1' -ErrorAction Stop |
            Where-Object { $_.PSObject.Properties['IPAddress'] -and $_.IPAddress } |
            Select-Object -First 1 -ExpandProperty IPAddress
        if ($address) { return $address }
    } catch {
        # No route to the internet: fall back to the interface that has a default gateway.
    }
    try {
        Get-NetIPConfiguration |
            Where-Object { $null -ne $_.IPv4DefaultGateway -and $null -ne $_.IPv4Address } |
            ForEach-Object { $_.IPv4Address.IPAddress } |
            Select-Object -First 1
    } catch {
        # Reported by the caller as no_primary_ipv4, before anything is changed.
        $null
    }
}

# Rewrite sftd.yaml with the given AccessAddress, keeping every other setting a team made.
function Write-AgentConfig([string] $Address) {
    $path = Join-Path $stateDir 'sftd.yaml'
    $lines = @()
    if (Test-Path -LiteralPath $path -PathType Leaf) {
        $lines = @(Get-Content -LiteralPath $path | Where-Object { $_ -notmatch '^\s*AccessAddress\s*:' })
    } else {
        $lines = @('---')
    }
    $lines += "AccessAddress: `"$Address`""
    # UTF-8 without a byte order mark: a BOM in front of the YAML is not what the agent expects.
    [System.IO.File]::WriteAllLines($path, [string[]] $lines, (New-Object System.Text.UTF8Encoding $false))
}

# The enrollment token from where the flow put it. AWS Tools for PowerShell (on AWS's Windows
# images) or the AWS CLI read it as the instance profile; the value comes back to this script
# only, never on a command line.
function Read-EnrollmentToken {
    $region = $env:AWS_SSM_REGION_NAME
    switch ($tokenSource) {
        'parameter-store' {
            if (Get-Command -Name Get-SSMParameter -ErrorAction SilentlyContinue) {
                $parameters = @{ Name = $tokenName; WithDecryption = $true }
                if ($region) { $parameters['Region'] = $region }
                return (Get-SSMParameter @parameters).Value
            }
            $arguments = @('ssm', 'get-parameter', '--name', $tokenName, '--with-decryption',
                '--query', 'Parameter.Value', '--output', 'text')
            if ($region) { $arguments += @('--region', $region) }
            $value = & aws @arguments
            if ($LASTEXITCODE -ne 0) { throw "aws ssm get-parameter exited $LASTEXITCODE" }
            return $value
        }
        'secrets-manager' {
            if (Get-Command -Name Get-SECSecretValue -ErrorAction SilentlyContinue) {
                $parameters = @{ SecretId = $tokenName }
                if ($region) { $parameters['Region'] = $region }
                return (Get-SECSecretValue @parameters).SecretString
            }
            $arguments = @('secretsmanager', 'get-secret-value', '--secret-id', $tokenName,
                '--query', 'SecretString', '--output', 'text')
            if ($region) { $arguments += @('--region', $region) }
            $value = & aws @arguments
            if ($LASTEXITCODE -ne 0) { throw "aws secretsmanager get-secret-value exited $LASTEXITCODE" }
            return $value
        }
        'file' {
            if (-not (Test-Path -LiteralPath $tokenName -PathType Leaf)) { throw 'no such file' }
            return (Get-Content -LiteralPath $tokenName -TotalCount 1)
        }
    }
    throw "unknown token source '$tokenSource'"
}

# --- checks: every refusal happens here, before the host is touched -------------------------
if ($tokenSource -notin @('parameter-store', 'secrets-manager', 'file') -or
    $tokenName -notmatch '^[A-Za-z0-9/_.:@+=\\-]{1,2048}$') {
    Stop-Refused 'missing_enrollment_token' ('no enrollment token source was given ' +
        '(SFT_TOKEN_SOURCE, SFT_TOKEN_NAME): run this script through the sft-fixer flow.')
}
try {
    $enrollmentToken = [string](Read-EnrollmentToken)
} catch {
    Stop-Refused 'token_unreadable' ("the enrollment token could not be read from $tokenSource " +
        "($tokenName): $($_.Exception.Message). The instance profile needs to read it " +
        '(ssm:GetParameter and kms:Decrypt, see SECURITY.md).')
}
if (-not $enrollmentToken) {
    Stop-Refused 'missing_enrollment_token' ("the enrollment token read from $tokenSource " +
        "($tokenName) is empty; save the token there again.")
}
if ($enrollmentToken -match '[\s\p{C}]') {
    Stop-Refused 'invalid_enrollment_token' ('the enrollment token contains spaces, line breaks ' +
        "or control characters; copy it again from the ASA project's Enrollment tab.")
}
$service = Get-Service -Name $serviceName -ErrorAction SilentlyContinue
if ($null -eq $service) {
    Stop-Refused 'not_installed' "the service $serviceName is not installed; install the agent first."
}
$accessAddress = Get-PrimaryIPv4
if (-not $accessAddress) {
    Stop-Refused 'no_primary_ipv4' ('no primary IPv4 address was found (Find-NetRoute, ' +
        'Get-NetIPConfiguration); sftd.yaml needs it as AccessAddress.')
}

# --- changes ----------------------------------------------------------------------------------
Write-Output "sft_reset: stopping $serviceName, AccessAddress $accessAddress"
try {
    Stop-Service -Name $serviceName -Force
    $service.WaitForStatus([System.ServiceProcess.ServiceControllerStatus]::Stopped, $waitLimit)
} catch {
    Stop-Failed 'stop_failed' "could not stop $serviceName`: $($_.Exception.Message)"
}

try {
    New-Item -ItemType Directory -Path $stateDir -Force | Out-Null
    # The device token is the host's enrollment: without it the agent enrolls again on start.
    $deviceToken = Join-Path $stateDir 'device.token'
    if (Test-Path -LiteralPath $deviceToken) { Remove-Item -LiteralPath $deviceToken -Force }
} catch {
    Stop-Failed 'device_token_delete_failed' "could not delete the device token: $($_.Exception.Message)"
}

try {
    # The state directory lives in the LocalSystem profile, which only SYSTEM and
    # Administrators can read, so the file inherits the protection the Linux mode 600 gives.
    # ASCII with a line break, as the vendor's own enrollment example writes it.
    [System.IO.File]::WriteAllText((Join-Path $stateDir 'enrollment.token'), "$enrollmentToken`r`n",
        [System.Text.Encoding]::ASCII)
} catch {
    Stop-Failed 'token_write_failed' "could not write the enrollment token: $($_.Exception.Message)"
}

try {
    Write-AgentConfig $accessAddress
} catch {
    Stop-Failed 'config_write_failed' "could not write sftd.yaml: $($_.Exception.Message)"
}

try {
    # Automatic as well: an agent found stopped is often one that was disabled and would stay
    # stopped after the next reboot.
    Set-Service -Name $serviceName -StartupType Automatic
    Start-Service -Name $serviceName
    $service.WaitForStatus([System.ServiceProcess.ServiceControllerStatus]::Running, $waitLimit)
} catch {
    Stop-Failed 'service_start_failed' ("$serviceName did not start: $($_.Exception.Message); " +
        'see the logs under the state directory.')
}

Write-Output 'sft_reset: device token deleted, enrollment token and sftd.yaml rewritten, service started'
Write-Output 'SFT_ACTION_RESULT=reset'
