# ScaleFT / Okta Advanced Server Access agent on Windows (service scaleft-server-tools): is it
# installed, running and enrolled? Read-only. Sent with AWS-RunPowerShellScript.
# Prints one KEY=value marker per fact for flows.parsers.parse_sft_detection:
#   SFT_PLATFORM=windows
#   SFT_INSTALLED=yes|no
#   SFT_TYPE=windows-service|none
#   SFT_STATUS=running|stopped|not_installed
#   SFT_ENROLLMENT_TOKEN=exists|missing  <state dir>\enrollment.token (never its content)
#   SFT_DEVICE_TOKEN=exists|missing      <state dir>\device.token: the host is enrolled
#   SFT_CONFIG=exists|missing            <state dir>\sftd.yaml
#   WINDOWS_VERSION=<caption> <version>
#   SFT_HOSTNAME=<name>                  the host's name, for the report
# The state directory is the one the vendor documents for the agent, which runs as LocalSystem:
# C:\Windows\System32\config\systemprofile\AppData\Local\scaleft (SFT_STATE_DIR overrides it).
$ErrorActionPreference = 'Stop'
$serviceName = 'scaleft-server-tools'

if ($env:SFT_STATE_DIR) {
    $stateDir = $env:SFT_STATE_DIR
} else {
    $stateDir = Join-Path $env:SystemRoot 'System32\config\systemprofile\AppData\Local\scaleft'
}

function Get-FileMarker([string] $Path) {
    if (Test-Path -LiteralPath $Path -PathType Leaf) { 'exists' } else { 'missing' }
}

$service = Get-Service -Name $serviceName -ErrorAction SilentlyContinue
if ($null -eq $service) {
    $installed = 'no'
    $agentType = 'none'
    $status = 'not_installed'
} else {
    $installed = 'yes'
    $agentType = 'windows-service'
    if ($service.Status -eq [System.ServiceProcess.ServiceControllerStatus]::Running) {
        $status = 'running'
    } else {
        $status = 'stopped'
    }
}

try {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $windowsVersion = "$($os.Caption) $($os.Version)".Trim()
} catch {
    # CIM can be disabled by policy; the agent facts above matter more than the OS name.
    $windowsVersion = [System.Environment]::OSVersion.VersionString
}

Write-Output 'SFT_PLATFORM=windows'
Write-Output "SFT_INSTALLED=$installed"
Write-Output "SFT_TYPE=$agentType"
Write-Output "SFT_STATUS=$status"
Write-Output "SFT_ENROLLMENT_TOKEN=$(Get-FileMarker (Join-Path $stateDir 'enrollment.token'))"
Write-Output "SFT_DEVICE_TOKEN=$(Get-FileMarker (Join-Path $stateDir 'device.token'))"
Write-Output "SFT_CONFIG=$(Get-FileMarker (Join-Path $stateDir 'sftd.yaml'))"
Write-Output "WINDOWS_VERSION=$windowsVersion"
Write-Output "SFT_HOSTNAME=$env:COMPUTERNAME"
