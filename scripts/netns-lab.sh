#!/usr/bin/env bash
# Build by hand the lab the namespace tests build (node/netlab.py): devices on a bridged LAN
# and devices behind a masquerading NAT, each in its own Linux network namespace.
#
#   sudo scripts/netns-lab.sh up [LAN_DEVICES=3] [NAT_DEVICES=1]   # build it
#   sudo scripts/netns-lab.sh down                                 # remove all of it
#
# Topology (ID=lab; names pmlab-*):
#   pmlab-sw   switch: bridge br0 (LAN 10.77.0.0/24), no address
#   pmlab-gw   router: eth0 10.77.0.1 on the LAN, bridge br1 10.78.0.1 inside; nftables
#              masquerades 10.78.0.0/24 and drops connections opened from the LAN inwards
#   pmlab-nI   LAN device I: eth0 10.77.0.(10+I)
#   pmlab-hI   device I behind the NAT: eth0 10.78.0.(10+I)
#   pmlab-c    a client device on the LAN: 10.77.0.9
# Nothing is connected to this machine's own network: only lab addresses can be reached.
#
# Then, for example (three devices, private mesh, found by mDNS, no --bootstrap):
#   p2pmoa keygen --network-key /tmp/lab.key
#   for i in 0 1 2; do
#     sudo ip netns exec pmlab-n$i p2pmoa node run --model stand-in --listen /ip4/0.0.0.0/tcp/7700 \
#        --api 10.77.0.1$i:8700 --data-dir /tmp/lab-n$i --network-key /tmp/lab.key &
#   done
#   sudo ip netns exec pmlab-c p2pmoa ask --api 10.77.0.10:8700 "What is 2+2?"
#   sudo ip netns exec pmlab-c p2pmoa peers --api 10.77.0.10:8700
# A device behind the NAT: start a LAN node with --relay, start the NAT'd node with
# --bootstrap <that node's address>; it prints a /p2p-circuit/ address others can bootstrap to.
# Faults as the nemesis applies them:
#   sudo ip netns exec pmlab-n1 nft add table inet pmfault
#   sudo ip netns exec pmlab-n1 nft add chain inet pmfault faultin '{ type filter hook input priority 0; }'
#   sudo ip netns exec pmlab-n1 nft add rule inet pmfault faultin numgen random mod 100 '<' 20 drop
#   sudo ip -n pmlab-n2 link set eth0 down          # partition one device
set -euo pipefail
ID=lab
P=pm$ID
cmd=${1:-}
LAN=${2:-3}
NAT=${3:-1}

plug() {  # plug NS IFNAME BRIDGE_NS BRIDGE CIDR PORTNAME
  ip -n "$3" link add "v$ID$6" type veth peer name "$2" netns "$1"
  ip -n "$3" link set "v$ID$6" master "$4"
  ip -n "$3" link set "v$ID$6" up
  ip -n "$1" addr add "$5" dev "$2"
  ip -n "$1" link set "$2" up
}
newns() { ip netns add "$1"; ip -n "$1" link set lo up; }
device() {  # device NS IP BRIDGE_NS BRIDGE GW PORTNAME
  newns "$1"; plug "$1" eth0 "$3" "$4" "$2/24" "$6"; ip -n "$1" route add default via "$5"
  echo "  $1  $2"
}

case "$cmd" in
up)
  command -v nft >/dev/null || { echo "needs nft: apt-get install nftables (make setup-net)" >&2; exit 2; }
  trap 'echo "failed; cleaning up" >&2; "$0" down' ERR
  newns $P-sw
  ip -n $P-sw link add br0 type bridge; ip -n $P-sw link set br0 up
  newns $P-gw
  plug $P-gw eth0 $P-sw br0 10.77.0.1/24 gw
  ip -n $P-gw link add br1 type bridge
  ip -n $P-gw addr add 10.78.0.1/24 dev br1
  ip -n $P-gw link set br1 up
  ip netns exec $P-gw sysctl -qw net.ipv4.ip_forward=1
  ip netns exec $P-gw nft -f - <<NFT
table ip pmnat {
  chain masq { type nat hook postrouting priority 100; oifname "eth0" ip saddr 10.78.0.0/24 masquerade; }
  chain filt { type filter hook forward priority 0; policy accept;
    iifname "eth0" oifname "br1" ct state established,related accept;
    iifname "eth0" oifname "br1" drop; }
}
NFT
  echo "lab $P:"
  for i in $(seq 0 $((LAN - 1))); do device $P-n$i 10.77.0.$((10 + i)) $P-sw br0 10.77.0.1 p$i; done
  for i in $(seq 0 $((NAT - 1))); do device $P-h$i 10.78.0.$((10 + i)) $P-gw br1 10.78.0.1 q$i; done
  device $P-c 10.77.0.9 $P-sw br0 10.77.0.1 pc
  ;;
down)
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do ip netns del "$ns"; done
  echo "lab $P removed"
  ;;
*)
  sed -n '2,36p' "$0"; exit 2 ;;
esac
