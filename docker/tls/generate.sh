#!/bin/sh
# Development certificates for `docker compose --profile tls up -d`: a local CA, a server
# certificate for 127.0.0.1 and localhost, and a client certificate for mutual TLS.
# For local development only: the keys are readable by the containers' users.
#
#   docker/tls/generate.sh
#   docker compose --profile tls up -d
#   cargo run -p persistence-cli -- status --url \
#     'rediss://127.0.0.1:6380/?sslrootcert=docker/tls/ca.pem&sslcert=docker/tls/client.pem&sslkey=docker/tls/client.key'
set -eu
cd "$(dirname "$0")"
days=825
openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=persistence dev CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout ca.key -out ca.pem 2>/dev/null
leaf() { # name, subject, extensions
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
# Cluster nodes and replicas present the server certificate as clients too.
leaf server "/CN=127.0.0.1" "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth
keyUsage=critical,digitalSignature,keyEncipherment"
leaf client "/CN=persistence_app" "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature,keyEncipherment"
rm -f ca.srl
chmod 644 server.key client.key
echo "wrote $(pwd)/{ca,server,client}.pem and keys"
