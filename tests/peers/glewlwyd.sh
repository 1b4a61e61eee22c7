#!/usr/bin/env bash
# glewlwyd.sh PORT DIR -- start a throw-away glewlwyd 2.7.5 OIDC server (Debian's package) on
# 127.0.0.1:PORT, the second real OAuth2 server of the tests (tests/src/glewlwyd.rs).
#
# Creates DIR/{glewlwyd.conf,glewlwyd.db,glewlwyd.log,key.pem,pub.pem,pid,admin.jar,endpoints.env},
# starts glewlwyd in the background (PID in DIR/pid), provisions it over the admin API
# and prints the issuer/endpoints on stdout (also saved as shell vars in DIR/endpoints.env).
# Stop it with:  kill "$(cat DIR/pid)"
#
# Env overrides (optional):
#   PEER_CLIENT_CC=1        enable the client_credentials grant: sets OIDC "allow-non-oidc": true
#                           (glewlwyd 2.7.5 refuses client_credentials with 403 otherwise; side
#                           effect: /auth requests without scope openid are accepted too) and
#                           gives client "app" authorization_type client_credentials + scope crm.read
#   PEER_LOG_LEVEL=INFO     glewlwyd log level (NONE|ERROR|WARNING|INFO|DEBUG)
#   PEER_REDIRECT_URIS="http://127.0.0.1:8765/callback http://127.0.0.1/callback"
set -euo pipefail

PORT=${1:?usage: glewlwyd.sh PORT DIR}
DIR=${2:?usage: glewlwyd.sh PORT DIR}
PLUGIN=oidc
LOG_LEVEL=${PEER_LOG_LEVEL:-INFO}
REDIRECT_URIS=${PEER_REDIRECT_URIS:-"http://127.0.0.1:8765/callback http://127.0.0.1/callback"}
CLIENT_CC=${PEER_CLIENT_CC:-0}
SQL=/usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz

for b in glewlwyd sqlite3 curl jq openssl; do
  command -v "$b" >/dev/null || { echo "glewlwyd.sh: missing $b" >&2; exit 1; }
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if [[ -f $DIR/pid ]] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then
  echo "glewlwyd.sh: an instance is already running with PID $(cat "$DIR/pid")" >&2; exit 1
fi
rm -f "$DIR"/glewlwyd.db "$DIR"/glewlwyd.log "$DIR"/pid "$DIR"/admin.jar "$DIR"/endpoints.env

BASE="http://127.0.0.1:$PORT"
API="$BASE/api"
ISS="$API/$PLUGIN"

# ---- 1. database + keys + config -------------------------------------------------------
zcat "$SQL" | sqlite3 "$DIR/glewlwyd.db"
openssl genrsa -out "$DIR/key.pem" 2048 2>/dev/null
openssl rsa -in "$DIR/key.pem" -pubout -out "$DIR/pub.pem" 2>/dev/null

# Derived from /usr/share/doc/glewlwyd/glewlwyd.conf.sample.gz. Differences: bind_address,
# no static_files_path (no web UI), file logging, cookie_secure=0 + cookie_domain=127.0.0.1
# (plain http on 127.0.0.1), no use_secure_connection line (its presence with =false makes
# 2.7.5 exit with "secure connection is active but certificate is not valid").
cat > "$DIR/glewlwyd.conf" <<EOF
port=$PORT
bind_address="127.0.0.1"
external_url="$BASE"
login_url="login.html"
api_prefix="api"
allow_origin="*"
allow_methods="GET, POST, PUT, DELETE, OPTIONS"
allow_headers="Origin, X-Requested-With, Content-Type, Accept, Bearer, Authorization, DPoP"
expose_headers="Content-Encoding, Authorization"
log_mode="file"
log_level="$LOG_LEVEL"
log_file="$DIR/glewlwyd.log"
cookie_domain="127.0.0.1"
cookie_secure=0
cookie_same_site="empty"
session_expiration=2419200
session_key="GLEWLWYD2_SESSION_ID"
admin_session_authentication="cookie"
profile_session_authentication="cookie"
allow_multiple_user_per_session=true
login_api_enabled=true
plugin_api_run_enabled=""
add_x_frame_option_header_deny=true
max_post_size=16778240
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="/usr/lib/glewlwyd/user"
client_module_path="/usr/lib/glewlwyd/client"
user_auth_scheme_module_path="/usr/lib/glewlwyd/scheme"
plugin_module_path="/usr/lib/glewlwyd/plugin"
hash_algorithm="SHA512"
database =
{
  type = "sqlite3"
  path = "$DIR/glewlwyd.db"
};
response_allowed_compression=""
EOF

# ---- 2. start ----------------------------------------------------------------------------
glewlwyd -c "$DIR/glewlwyd.conf" >>"$DIR/stdout.log" 2>&1 </dev/null &
GPID=$!
echo "$GPID" > "$DIR/pid"
for _ in $(seq 1 100); do
  if curl -fs -o /dev/null "$BASE/config"; then break; fi
  if ! kill -0 "$GPID" 2>/dev/null; then
    echo "glewlwyd.sh: glewlwyd exited; see $DIR/glewlwyd.log $DIR/stdout.log" >&2; exit 1
  fi
  sleep 0.1
done
curl -fs -o /dev/null "$BASE/config" || { echo "glewlwyd.sh: glewlwyd not answering" >&2; kill "$GPID"; exit 1; }

# ---- 3. provision ------------------------------------------------------------------------
JAR="$DIR/admin.jar"
adm() { # adm METHOD PATH [JSON]  -> fails on non-2xx
  local m=$1 p=$2 d=${3:-} code out
  out=$(mktemp)
  if [[ -n $d ]]; then
    code=$(curl -s -o "$out" -w '%{http_code}' -b "$JAR" -X "$m" -H 'Content-Type: application/json' --data-binary "$d" "$API$p")
  else
    code=$(curl -s -o "$out" -w '%{http_code}' -b "$JAR" -X "$m" "$API$p")
  fi
  if [[ $code != 2* ]]; then
    echo "glewlwyd.sh: $m $p -> HTTP $code: $(cat "$out")" >&2; rm -f "$out"; kill "$GPID"; exit 1
  fi
  rm -f "$out"
}

code=$(curl -s -o /dev/null -w '%{http_code}' -c "$JAR" -H 'Content-Type: application/json' \
  -d '{"username":"admin","password":"password"}' "$API/auth/")
[[ $code == 200 ]] || { echo "glewlwyd.sh: admin login failed ($code)" >&2; kill "$GPID"; exit 1; }

for s in offline_access crm.read; do
  adm POST /scope/ "$(jq -nc --arg n "$s" '{name:$n, display_name:$n, description:("scope "+$n),
        password_required:false, password_max_age:0, scheme:{}}')"
done

NONOIDC=false; [[ $CLIENT_CC == 1 ]] && NONOIDC=true
PARAMS=$(jq -nc --argjson nonoidc "$NONOIDC" --arg iss "$ISS" --rawfile key "$DIR/key.pem" --rawfile cert "$DIR/pub.pem" '{
  "iss": $iss,
  "subject-type": "public",
  "jwt-type": "rsa", "jwt-key-size": "256", "key": $key, "cert": $cert,
  "jwks-show": true,
  "access-token-duration": 300,
  "refresh-token-duration": 86400,
  "code-duration": 600,
  "refresh-token-rolling": false,
  "refresh-token-one-use": "always",
  "client-refresh-token-one-use-parameter": "refresh-token-one-use",
  "allow-non-oidc": $nonoidc,
  "auth-type-code-enabled": true,
  "auth-type-code-revoke-replayed": true,
  "auth-type-token-enabled": false,
  "auth-type-id-token-enabled": false,
  "auth-type-none-enabled": false,
  "auth-type-password-enabled": false,
  "auth-type-client-enabled": true,
  "auth-type-device-enabled": false,
  "auth-type-refresh-enabled": true,
  "scope": [],
  "additional-parameters": [],
  "claims": [],
  "name-claim": "mandatory", "name-claim-scope": [],
  "email-claim": "mandatory", "email-claim-scope": [],
  "scope-claim": "no", "scope-claim-scope": [],
  "address-claim": {"type":"no","formatted":"","street_address":"","locality":"","region":"","postal_code":"","country":"","mandatory":false},
  "allowed-scope": ["openid","offline_access","crm.read"],
  "pkce-allowed": true,
  "pkce-method-plain-allowed": false,
  "pkce-required": false,
  "introspection-revocation-allowed": true,
  "introspection-revocation-auth-scope": [],
  "introspection-revocation-allow-target-client": true,
  "register-client-allowed": false,
  "session-management-allowed": false,
  "request-parameter-allow": true,
  "oauth-dpop-allowed": false,
  "oauth-par-allowed": false,
  "oauth-rar-allowed": false,
  "oauth-ciba-allowed": false,
  "resource-allowed": false
}')
adm POST /mod/plugin/ "$(jq -nc --argjson p "$PARAMS" --arg n "$PLUGIN" \
  '{module:"oidc", name:$n, display_name:"OpenID Connect", order_rank:0, parameters:$p}')"

AUTHZ='["code","refresh_token"]'; CSCOPE='[]'
[[ $CLIENT_CC == 1 ]] && { AUTHZ='["code","refresh_token","client_credentials"]'; CSCOPE='["crm.read"]'; }
adm POST /client/ "$(jq -nc --argjson az "$AUTHZ" --argjson cs "$CSCOPE" --arg ru "$REDIRECT_URIS" '{
  client_id:"app", name:"app", description:"e2e confidential client", enabled:true,
  confidential:true, password:"app-secret",
  redirect_uri: ($ru | split(" ") | map(select(length>0))),
  authorization_type: $az,
  token_endpoint_auth_method: ["client_secret_basic"],
  scope: $cs}')"

adm POST /user/ '{"username":"alice","password":"alice-password","name":"Alice","email":"alice@example.test",
  "enabled":true,"scope":["openid","offline_access","crm.read"]}'

# discovery must now answer
DISC=$(curl -fs "$ISS/.well-known/openid-configuration") || {
  echo "glewlwyd.sh: discovery not answering" >&2; kill "$GPID"; exit 1; }

# ---- 4. print endpoints -----------------------------------------------------------------
{
  echo "PEER_PID=$GPID"
  echo "ISSUER=$(jq -r .issuer <<<"$DISC")"
  echo "DISCOVERY=$ISS/.well-known/openid-configuration"
  echo "AUTHORIZE=$(jq -r .authorization_endpoint <<<"$DISC")"
  echo "TOKEN=$(jq -r .token_endpoint <<<"$DISC")"
  echo "USERINFO=$(jq -r .userinfo_endpoint <<<"$DISC")"
  echo "JWKS=$(jq -r .jwks_uri <<<"$DISC")"
  echo "REVOCATION=$(jq -r '.revocation_endpoint // empty' <<<"$DISC")"
  echo "INTROSPECTION=$(jq -r '.introspection_endpoint // empty' <<<"$DISC")"
  echo "USER_LOGIN=$API/auth/"
  echo "USER_GRANT=$API/auth/grant/app"
  echo "CLIENT_ID=app"
  echo "CLIENT_SECRET=app-secret"
} | tee "$DIR/endpoints.env"
