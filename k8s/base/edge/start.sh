#!/bin/sh
# Writes the two things nginx.conf includes that only the pod knows, then runs nginx:
# - its DNS server (nginx's own resolver reads no /etc/resolv.conf), and
# - the hash ring: one `server` line per edge pod, by stable DNS name, built from this pod's
#   own FQDN (imgcdn-edge-N.imgcdn-edge-peers.<namespace>.svc.<cluster domain>) and
#   EDGE_REPLICAS, so the namespace and cluster domain are never spelled out.
set -eu

replicas=${EDGE_REPLICAS:?set EDGE_REPLICAS to the replicas of the StatefulSet}
out=/tmp/imgcdn
mkdir -p "$out"

nameserver=$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)
case "$nameserver" in
    *:*) nameserver="[$nameserver]" ;;
esac
echo "resolver $nameserver valid=10s;" > "$out/resolver.conf"

host=$(hostname)
fqdn=$(awk -v host="$host" '{ for (i = 2; i <= NF; i++) if (index($i, host ".") == 1) { print $i; exit } }' /etc/hosts)
if [ -z "$fqdn" ]; then
    echo "start.sh: no FQDN for $host in /etc/hosts (run as a StatefulSet with serviceName)" >&2
    exit 1
fi
domain=${fqdn#"$host".}   # imgcdn-edge-peers.<namespace>.svc.<cluster domain>
set_name=${host%-*}       # imgcdn-edge

: > "$out/peers.conf"
i=0
while [ "$i" -lt "$replicas" ]; do
    echo "server $set_name-$i.$domain:8081 resolve max_fails=2 fail_timeout=5s;" >> "$out/peers.conf"
    i=$((i + 1))
done

echo "start.sh: $host, ring of $replicas peers under $domain, resolver $nameserver" >&2
exec nginx -e /dev/stderr -c /etc/nginx/imgcdn/nginx.conf -g 'daemon off;'
