#!/bin/sh
# make demo / make demo-stop: the gateway and the TSB simulator on loopback.
#
#   DEMO_PORT      gateway port   (default 8080)
#   DEMO_SIM_PORT  simulator port (default 8081)
#   DEMO_DIR       state, logs    (default ./demo)
#   NGINX_BIN      nginx binary   (default /usr/sbin/nginx)
#   MODULE_SO      the module     (default build/ngx_http_tsb_module.so)
#   NGINX_WRAPPER  a command nginx runs under (default none)

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
dir=${DEMO_DIR:-$top/demo}
port=${DEMO_PORT:-8080}
sim_port=${DEMO_SIM_PORT:-8081}
nginx=${NGINX_BIN:-/usr/sbin/nginx}
python=${PYTHON:-/usr/bin/python3}

stop() {
    if [ -f "$dir/nginx.pid" ]; then
        kill -QUIT "$(cat "$dir/nginx.pid")" 2>/dev/null || true
        rm -f "$dir/nginx.pid"
    fi
    if [ -f "$dir/sim.pid" ]; then
        kill "$(cat "$dir/sim.pid")" 2>/dev/null || true
        rm -f "$dir/sim.pid"
    fi
}

wait_for() {
    i=0
    while [ $i -lt 50 ]; do
        if curl -s -o /dev/null "$1"; then
            return 0
        fi
        i=$((i + 1))
        sleep 0.1
    done
    echo "demo: $2 did not come up; see $dir/*.log" >&2
    exit 1
}

case "${1:-start}" in
stop)
    stop
    echo "demo stopped"
    exit 0
    ;;
esac

stop
mkdir -p "$dir/tmp" "$dir/sim"

"$python" "$top/sim/tsb_sim.py" --host 127.0.0.1 --port "$sim_port" \
    --state-dir "$dir/sim" --api-key demo-api-key-not-for-clients \
    >"$dir/sim.log" 2>&1 &
echo $! >"$dir/sim.pid"
wait_for "http://127.0.0.1:$sim_port/_sim/health" "the TSB simulator"

sed -e "s#@MODULE@#${MODULE_SO:-$top/build/ngx_http_tsb_module.so}#" \
    -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#" -e "s#@SIM_PORT@#$sim_port#" \
    -e "s#@TOP@#$top#g" \
    "$top/conf/demo.conf" >"$dir/nginx.conf"

# NGINX_WRAPPER (unquoted: a command and its arguments) runs nginx under a
# checker, as make test-asan and test-valgrind do
${NGINX_WRAPPER:-} "$nginx" -p "$dir" -c "$dir/nginx.conf" -g 'daemon on;'
wait_for "http://127.0.0.1:$port/tsb/request/x" "nginx"

cat <<MSG

The demo gateway is running:
  gateway        http://127.0.0.1:$port   (nginx + ngx_http_tsb_module)
  TSB simulator  http://127.0.0.1:$sim_port   (signs with its own CA: $dir/sim/ca.pem)
  logs           $dir/error.log, $dir/sim.log
  the page       http://127.0.0.1:$port/ui/   (make a key and CSR in the browser)

Issue a certificate end to end (copy and paste):

  # 1. a key and a CSR for a name the demo policy allows (*.svc.example.internal)
  openssl req -new -newkey rsa:2048 -nodes -subj /CN=web.svc.example.internal \\
      -keyout web.key -out web.csr

  # 2. ask the gateway; it checks the CSR and the policy, then forwards it
  ID=\$(curl -s -H 'Content-Type: application/x-pem-file' --data-binary @web.csr \\
      http://127.0.0.1:$port/tsb/sign | sed 's/.*"signRequestId": *"\\([^"]*\\)".*/\\1/')
  echo "request \$ID"

  # 3. the request waits for approvers: look at it, then approve it
  curl -s http://127.0.0.1:$port/tsb/request/\$ID; echo
  curl -s -X POST http://127.0.0.1:$sim_port/_sim/approve/\$ID >/dev/null

  # 4. fetch the certificate (?wait holds the answer until it is issued)
  curl -s -o web.pem "http://127.0.0.1:$port/tsb/request/\$ID.pem?wait=10"
  openssl verify -CAfile $dir/sim/ca.pem web.pem
  openssl x509 -in web.pem -noout -subject -issuer -ext extendedKeyUsage

A name outside the policy is refused before it reaches the TSB:

  openssl req -new -newkey rsa:2048 -nodes -subj /CN=evil.example.com \\
      -keyout evil.key -out evil.csr
  curl -s -H 'Content-Type: application/x-pem-file' --data-binary @evil.csr \\
      http://127.0.0.1:$port/tsb/sign; echo

Or use the self-service page: open http://127.0.0.1:$port/ui/ , ask for
web.svc.example.internal, then approve the request as in step 3.

Stop it with: make demo-stop
MSG
