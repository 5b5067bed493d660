# shellcheck shell=bash
# Real registries on loopback for the tests: sourced, never run.
#
#   source test/registry/lib.sh
#   trap registry_stop_all EXIT
#   registry_start anon REG                 # exports REG_ADDR=127.0.0.1:PORT, REG_LOG, ...
#   fault_proxy_start PROXY "$REG_ADDR" --status 503:PUT:/manifests/:1
#   skopeo copy --dest-tls-verify=false oci:layout "docker://$PROXY_ADDR/app:1"
#   grep -c 'fault=status:503' "$PROXY_LOG"
#
# registry_start KIND NAME [KEY=VALUE...] [--token-server-flag...]
#   KIND  anon   Debian's docker-registry (CNCF distribution 2.8), filesystem storage, deletes on
#         basic  the same with htpasswd (bcrypt) auth: user $REGISTRY_TEST_USER (ociuser),
#                password $REGISTRY_TEST_PASSWORD
#         token  the same with `auth: token`: realm = test/registry/token_server.py (started
#                here, signing with a fresh self-signed RSA cert that is the registry's
#                rootcertbundle), service ocibuild-test, issuer ocibuild-test-issuer
#         ferro  ferro-oci-server (OCI distribution spec 1.1, referrers API), no auth
#   NAME  a shell identifier; the exports below are named after it.
#   KEY=VALUE  extra environment for the registry process (e.g. REGISTRY_HTTP_RELATIVEURLS=true
#         for distribution, RUST_LOG=debug for ferro). The caller's own REGISTRY_* variables
#         (REGISTRY_AUTH_FILE, REGISTRY_TEST_PASSWORD, ...) are kept from distribution, which
#         would read them as configuration.
#   --flag [value]  (token only) passed on to token_server.py, e.g. --sign kid,
#         --anonymous none, --expires-in 5, --token-field access_token, --no-post.
#   Exports: NAME_ADDR (127.0.0.1:PORT), NAME_URL (http://NAME_ADDR), NAME_LOG (server output),
#         NAME_DIR (its state; blobs under NAME_DIR/storage), NAME_PID (process group id),
#         NAME_KIND; for token also NAME_TOKEN_ADDR, NAME_TOKEN_URL (the realm),
#         NAME_TOKEN_LOG (one line per token request), NAME_TOKEN_CERT, NAME_TOKEN_KEY.
#   Returns once GET /v2/ answers 200 or 401; on failure prints why and the log's tail, and
#   returns 1.
#
# fault_proxy_start NAME UPSTREAM_ADDR [FLAG...]
#   Starts test/registry/fault_proxy.py in front of UPSTREAM_ADDR (see its --help for the
#   faults). Exports NAME_ADDR, NAME_URL, NAME_LOG (one line per request), NAME_OUT (the
#   proxy's own output), NAME_PID, NAME_DIR, NAME_KIND (fault-proxy). Sends no request
#   through the proxy, so its log and its fault counters start with the caller's first request.
#   FAULT_PROXY_HOST (default 127.0.0.1) is the address it listens on (127.0.0.2 is another
#   loopback host name for the same machine).
#
# registry_stop NAME        stop one server (both processes for a token registry)
# registry_stop_all         stop everything started here and delete the state; idempotent,
#                           for `trap registry_stop_all EXIT`. REGISTRY_KEEP=1 keeps the state
#                           directory (its path is printed).
# registry_wait ADDR [PID [LOG [SECS]]]  wait until http://ADDR/v2/ answers 200 or 401
# registry_free_port        print a free loopback TCP port
# registry_dump_logs        print the tail of every log of this run (for a failing test)
# fault_proxy_sum LOG FIELD [METHOD_ERE [PATH_ERE]]  add up a numeric field (req_bytes,
#                           up_bytes, resp_bytes) over the proxy log's matching lines
# fault_proxy_count LOG [METHOD_ERE [PATH_ERE [FAULT_ERE]]]  count the matching lines
#
# A log is written by another process, after it answered: a client that has its answer may
# look before the line is there. Checks of logs therefore wait for what they expect, within
# REGISTRY_LOG_WAIT seconds (default 10), and never read once and hope:
# wait_eq NAME EXPECTED CMD...     check_eq on CMD's output, once it equals EXPECTED or the
#                                  wait is over
# wait_contains NAME NEEDLE FILE   check_contains on FILE, once it holds NEEDLE or the wait is
#                                  over
#
# Variables: REGISTRY_TEST_USER (ociuser), REGISTRY_TEST_PASSWORD (random unless already
# set), REGISTRY_RUN_DIR (the state of this run: made on the first start, under
# $OCIBUILD_TEST_TMP, else $TMPDIR or /tmp), REGISTRY_START_TIMEOUT (seconds, default 30),
# REGISTRY_PYTHON (default python3), OCIBUILD_TOOLS_DIR (where install-deps.sh put
# ferro-oci-server, default ~/.cache/ocibuild-tools).

REGISTRY_LIB_DIR=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
export REGISTRY_TEST_USER=${REGISTRY_TEST_USER:-ociuser}
if [ -z "${REGISTRY_TEST_PASSWORD:-}" ]; then
    REGISTRY_TEST_PASSWORD=pw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
fi
export REGISTRY_TEST_PASSWORD
REGISTRY_TOKEN_SERVICE=ocibuild-test
REGISTRY_TOKEN_ISSUER=ocibuild-test-issuer
REGISTRY_RUN_DIR=${REGISTRY_RUN_DIR:-}

registry_free_port() {
    "${REGISTRY_PYTHON:-python3}" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

_registry_run_dir() {
    if [ -z "${REGISTRY_RUN_DIR:-}" ] || [ ! -d "$REGISTRY_RUN_DIR" ]; then
        local base=${OCIBUILD_TEST_TMP:-${TMPDIR:-/tmp}}
        mkdir -p "$base"
        REGISTRY_RUN_DIR=$(mktemp -d "$base/ocibuild-registry.XXXXXX")
        : >"$REGISTRY_RUN_DIR/procs"
    fi
}

# _registry_log_tail LOG: the last lines of LOG, indented, for an error message.
_registry_log_tail() {
    if [ -s "$1" ]; then
        printf '  ---- last lines of %s ----\n' "$1"
        tail -n "${2:-30}" "$1" | sed 's/^/  | /'
    else
        printf '  (%s is empty)\n' "$1"
    fi
}

_registry_fail() {
    local msg=$1 log=${2:-}
    {
        printf 'registry lib: %s\n' "$msg"
        if [ -n "$log" ]; then _registry_log_tail "$log"; fi
    } >&2
    return 1
}

# _registry_spawn NAME TAG LOG CMD...: run CMD in a session (and process group) of its own with
# its output in LOG; sets _registry_pid to its pid (= its process group id).
_registry_spawn() {
    local name=$1 tag=$2 log=$3 pidfile _
    shift 3
    pidfile=$REGISTRY_RUN_DIR/$tag.pid
    rm -f "$pidfile"
    # The inner shell writes its own pid, which is the group's id whether or not setsid forked.
    # shellcheck disable=SC2016 # $$ and $0 are the inner shell's
    setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
        </dev/null >>"$log" 2>&1 &
    disown $! 2>/dev/null || true
    for _ in $(seq 1 100); do
        [ -s "$pidfile" ] && break
        sleep 0.05
    done
    [ -s "$pidfile" ] || _registry_fail "$tag: the process did not start" "$log" || return 1
    _registry_pid=$(cat "$pidfile")
    printf '%s %s %s\n' "$name" "$tag" "$_registry_pid" >>"$REGISTRY_RUN_DIR/procs"
}

# registry_wait ADDR [PID [LOG [SECS]]]: until GET http://ADDR/v2/ answers 200 or 401; fails
# early (with the log's tail) if PID dies.
registry_wait() {
    local addr=$1 pid=${2:-} log=${3:-} secs=${4:-${REGISTRY_START_TIMEOUT:-30}} code deadline
    deadline=$((SECONDS + secs))
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$addr/v2/" 2>/dev/null) || true
        case "$code" in 200 | 401) return 0 ;; esac
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            _registry_fail "the server for $addr exited before answering GET /v2/" "$log"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            _registry_fail "no answer from http://$addr/v2/ after ${secs}s (last status: ${code:-none})" "$log"
            return 1
        fi
        sleep 0.1
    done
}

# _registry_wait_port_file PIDFILE_TAG PORTFILE LOG: for our Python servers, which bind port 0
# and write the port they got.
_registry_wait_port_file() {
    local pid=$1 portfile=$2 log=$3 deadline
    deadline=$((SECONDS + ${REGISTRY_START_TIMEOUT:-30}))
    until [ -s "$portfile" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            _registry_fail "$(basename "$log" .log) exited at start" "$log"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            _registry_fail "$(basename "$log" .log) did not start listening" "$log"
            return 1
        fi
        sleep 0.05
    done
}

_registry_distribution_config() {
    local dir=$1 port=$2 auth=$3
    cat <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  headers:
    X-Content-Type-Options: [nosniff]
$auth
EOF
}

# _registry_start_server NAME DIR LOG ENV... -- CMD...: pick a port, start, wait for /v2/.
# CMD and ENV may hold @PORT@, replaced by the port. Retries with another port if the one
# picked was taken in the meantime.
_registry_start_server() {
    local name=$1 dir=$2 log=$3 attempt port envs=() cmd=() a
    shift 3
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    for attempt in 1 2 3; do
        port=$(registry_free_port) || return 1
        cmd=()
        for a in "${envs[@]}"; do cmd+=("${a//@PORT@/$port}"); done
        for a in "$@"; do cmd+=("${a//@PORT@/$port}"); done
        if [ -e "$dir/config.yml.in" ]; then
            sed "s/@PORT@/$port/g" "$dir/config.yml.in" >"$dir/config.yml"
        fi
        : >"$log"
        # distribution reads REGISTRY_<SECTION>_<KEY> variables as configuration: keep the
        # caller's (REGISTRY_AUTH_FILE of skopeo and podman, REGISTRY_TEST_PASSWORD, ...) away
        # from it. KEY=VALUE arguments are set after this, so they still apply.
        local unset=() v
        for v in $(compgen -e); do
            case "$v" in REGISTRY_*) unset+=(-u "$v") ;; esac
        done
        _registry_spawn "$name" "$name" "$log" env "${unset[@]}" "${cmd[@]}" || return 1
        if registry_wait "127.0.0.1:$port" "$_registry_pid" "$log" 2>"$dir/wait.err"; then
            export "${name}_ADDR=127.0.0.1:$port" "${name}_URL=http://127.0.0.1:$port" \
                "${name}_LOG=$log" "${name}_DIR=$dir" "${name}_PID=$_registry_pid"
            return 0
        fi
        if [ "$attempt" -lt 3 ] && grep -qi 'address already in use' "$log"; then
            registry_stop "$name"
            continue
        fi
        cat "$dir/wait.err" >&2
        registry_stop "$name"
        return 1
    done
}

registry_start() {
    local kind=${1:-} name=${2:-} dir log envs=() tflags=() auth bin
    [ $# -ge 2 ] || { _registry_fail "usage: registry_start anon|basic|token|ferro NAME [KEY=VALUE...] [--flag...]"; return 1; }
    shift 2
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { _registry_fail "registry_start: NAME must be a shell identifier, not '$name'"; return 1; }
    while [ $# -gt 0 ]; do
        case "$1" in
        --*)
            [ "$kind" = token ] || { _registry_fail "registry_start $kind: flag $1 is for token registries only"; return 1; }
            tflags+=("$1")
            # a flag's value, if it has one (the next argument, unless it is a flag or KEY=VALUE)
            if [ $# -ge 2 ] && [[ "$2" != --* ]] && [[ "$2" != *=* ]]; then tflags+=("$2"); shift; fi
            ;;
        *=*) envs+=("$1") ;;
        *) _registry_fail "registry_start: unexpected argument '$1'"; return 1 ;;
        esac
        shift
    done
    _registry_run_dir
    dir=$REGISTRY_RUN_DIR/$name
    [ ! -e "$dir" ] || { _registry_fail "registry_start: the name $name is already in use in this run"; return 1; }
    mkdir -p "$dir/storage"
    log=$dir/$kind.log
    export "${name}_KIND=$kind"

    case "$kind" in
    anon | basic | token)
        command -v docker-registry >/dev/null ||
            { _registry_fail "docker-registry not found: run scripts/install-deps.sh (Debian package docker-registry)"; return 1; }
        auth=''
        if [ "$kind" = basic ]; then
            command -v htpasswd >/dev/null ||
                { _registry_fail "htpasswd not found: run scripts/install-deps.sh (Debian package apache2-utils)"; return 1; }
            # -i: the password comes on stdin, not on a command line that ps would show.
            printf '%s\n' "$REGISTRY_TEST_PASSWORD" | htpasswd -Bin "$REGISTRY_TEST_USER" >"$dir/htpasswd" 2>"$dir/htpasswd.err" ||
                { _registry_fail "htpasswd failed" "$dir/htpasswd.err"; return 1; }
            auth="auth:
  htpasswd:
    realm: ocibuild-test
    path: $dir/htpasswd"
        elif [ "$kind" = token ]; then
            _registry_start_token_server "$name" "$dir" "${tflags[@]}" || return 1
            local realm_var=${name}_TOKEN_URL
            auth="auth:
  token:
    realm: ${!realm_var}
    service: $REGISTRY_TOKEN_SERVICE
    issuer: $REGISTRY_TOKEN_ISSUER
    rootcertbundle: $dir/token-cert.pem"
        fi
        _registry_distribution_config "$dir" @PORT@ "$auth" >"$dir/config.yml.in"
        _registry_start_server "$name" "$dir" "$log" "${envs[@]}" -- \
            docker-registry serve "$dir/config.yml" || return 1
        ;;
    ferro)
        bin=$(command -v ferro-oci-server || true)
        if [ -z "$bin" ]; then
            bin=${OCIBUILD_TOOLS_DIR:-$HOME/.cache/ocibuild-tools}/bin/ferro-oci-server
        fi
        [ -x "$bin" ] || { _registry_fail "ferro-oci-server not found (looked on PATH and at $bin): run scripts/install-deps.sh"; return 1; }
        _registry_start_server "$name" "$dir" "$log" NO_COLOR=1 RUST_LOG=info \
            FERRO_OCI_LISTEN=127.0.0.1:@PORT@ "FERRO_OCI_STORAGE_DIR=$dir/storage" "${envs[@]}" -- \
            "$bin" || return 1
        ;;
    *)
        _registry_fail "registry_start: unknown kind '$kind' (anon, basic, token or ferro)"
        return 1
        ;;
    esac
}

# _registry_start_token_server NAME DIR [FLAG...]
_registry_start_token_server() {
    local name=$1 dir=$2 tlog port
    shift 2
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj "/CN=ocibuild-test-token" \
        -keyout "$dir/token-key.pem" -out "$dir/token-cert.pem" >"$dir/openssl.log" 2>&1 ||
        { _registry_fail "openssl could not make the token signing certificate" "$dir/openssl.log"; return 1; }
    tlog=$dir/token-server.log
    : >"$tlog"
    _registry_spawn "$name" "${name}_token" "$tlog" "${REGISTRY_PYTHON:-python3}" "$REGISTRY_LIB_DIR/token_server.py" \
        --listen 127.0.0.1:0 --port-file "$dir/token.port" \
        --key "$dir/token-key.pem" --cert "$dir/token-cert.pem" \
        --service "$REGISTRY_TOKEN_SERVICE" --issuer "$REGISTRY_TOKEN_ISSUER" \
        --user "$REGISTRY_TEST_USER" --password-env REGISTRY_TEST_PASSWORD \
        --log "$dir/token-requests.log" "$@" || return 1
    _registry_wait_port_file "$_registry_pid" "$dir/token.port" "$tlog" || return 1
    port=$(cat "$dir/token.port")
    export "${name}_TOKEN_ADDR=127.0.0.1:$port" "${name}_TOKEN_URL=http://127.0.0.1:$port/token" \
        "${name}_TOKEN_LOG=$dir/token-requests.log" "${name}_TOKEN_CERT=$dir/token-cert.pem" \
        "${name}_TOKEN_KEY=$dir/token-key.pem"
}

fault_proxy_start() {
    local name=${1:-} upstream=${2:-} dir port
    [ $# -ge 2 ] || { _registry_fail "usage: fault_proxy_start NAME UPSTREAM_ADDR [FLAG...]"; return 1; }
    shift 2
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { _registry_fail "fault_proxy_start: NAME must be a shell identifier, not '$name'"; return 1; }
    _registry_run_dir
    dir=$REGISTRY_RUN_DIR/$name
    [ ! -e "$dir" ] || { _registry_fail "fault_proxy_start: the name $name is already in use in this run"; return 1; }
    mkdir -p "$dir"
    : >"$dir/requests.log"
    local host=${FAULT_PROXY_HOST:-127.0.0.1}
    _registry_spawn "$name" "$name" "$dir/fault-proxy.log" "${REGISTRY_PYTHON:-python3}" "$REGISTRY_LIB_DIR/fault_proxy.py" \
        --upstream "$upstream" --listen "$host:0" --port-file "$dir/port" --log "$dir/requests.log" "$@" || return 1
    _registry_wait_port_file "$_registry_pid" "$dir/port" "$dir/fault-proxy.log" || return 1
    port=$(cat "$dir/port")
    export "${name}_ADDR=$host:$port" "${name}_URL=http://$host:$port" \
        "${name}_LOG=$dir/requests.log" "${name}_OUT=$dir/fault-proxy.log" "${name}_PID=$_registry_pid" \
        "${name}_DIR=$dir" "${name}_KIND=fault-proxy"
}

# _registry_kill_groups PID...: TERM each process group, then KILL what is left after ~3s.
_registry_kill_groups() {
    local pid _ alive
    [ $# -gt 0 ] || return 0
    for pid in "$@"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 30); do
        alive=0
        for pid in "$@"; do
            if kill -0 -- "-$pid" 2>/dev/null; then alive=1; fi
        done
        [ "$alive" = 1 ] || return 0
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}

registry_stop() {
    local name=$1 pids=() n tag pid
    [ -n "${REGISTRY_RUN_DIR:-}" ] && [ -f "$REGISTRY_RUN_DIR/procs" ] || return 0
    while read -r n tag pid; do
        [ "$n" = "$name" ] && pids+=("$pid")
    done <"$REGISTRY_RUN_DIR/procs"
    _registry_kill_groups "${pids[@]}"
    # forget them, so registry_stop_all does not signal pids that may be reused
    grep -v "^$name " "$REGISTRY_RUN_DIR/procs" >"$REGISTRY_RUN_DIR/procs.new" || true
    mv "$REGISTRY_RUN_DIR/procs.new" "$REGISTRY_RUN_DIR/procs"
}

registry_stop_all() {
    local pids=() n tag pid
    [ -n "${REGISTRY_RUN_DIR:-}" ] || return 0
    if [ -f "$REGISTRY_RUN_DIR/procs" ]; then
        while read -r n tag pid; do pids+=("$pid"); done <"$REGISTRY_RUN_DIR/procs"
        _registry_kill_groups "${pids[@]}"
        : >"$REGISTRY_RUN_DIR/procs"
    fi
    if [ "${REGISTRY_KEEP:-0}" = 1 ]; then
        printf 'registry lib: kept %s\n' "$REGISTRY_RUN_DIR" >&2
    else
        rm -rf "$REGISTRY_RUN_DIR"
    fi
    REGISTRY_RUN_DIR=
    return 0
}

registry_dump_logs() {
    local f
    [ -n "${REGISTRY_RUN_DIR:-}" ] && [ -d "$REGISTRY_RUN_DIR" ] || return 0
    for f in "$REGISTRY_RUN_DIR"/*/*.log; do
        [ -e "$f" ] && _registry_log_tail "$f" 40
    done
    return 0
}

# _fault_proxy_select LOG METHOD_ERE PATH_ERE FAULT_ERE: the log lines that match.
_fault_proxy_select() {
    awk -v m="^(${2:-.*})\$" -v p="${3:-.*}" -v f="${4:-.*}" '{
        method = ""; path = ""; fault = ""
        for (i = 1; i <= NF; i++) {
            if ($i ~ /^method=/) method = substr($i, 8)
            else if ($i ~ /^path=/) path = substr($i, 6)
            else if ($i ~ /^fault=/) fault = substr($i, 7)
        }
        if (method ~ m && path ~ p && fault ~ f) print
    }' "$1"
}

fault_proxy_sum() {
    local log=$1 field=$2
    _fault_proxy_select "$log" "${3:-}" "${4:-}" "" |
        awk -v k="$field=" '{ for (i = 1; i <= NF; i++) if (index($i, k) == 1) s += substr($i, length(k) + 1) } END { print s + 0 }'
}

fault_proxy_count() {
    _fault_proxy_select "$1" "${2:-}" "${3:-}" "${4:-}" | wc -l | tr -d ' '
}

# _registry_wait_until CMD...: run CMD until it succeeds or REGISTRY_LOG_WAIT seconds pass.
_registry_wait_until() {
    local deadline=$((SECONDS + ${REGISTRY_LOG_WAIT:-10}))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

_registry_output_is() {
    local expected=$1
    shift
    [ "$("$@" 2>&1)" == "$expected" ]
}

wait_eq() {
    local name=$1 expected=$2
    shift 2
    _registry_wait_until _registry_output_is "$expected" "$@" || true
    check_eq "$name" "$expected" "$("$@" 2>&1)"
}

wait_contains() {
    local name=$1 needle=$2 file=$3
    _registry_wait_until grep -qF -- "$needle" "$file" || true
    check_contains "$name" "$needle" "$(cat "$file" 2>&1)"
}
