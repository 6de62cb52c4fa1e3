#!/bin/sh
# init (PID 1) of a User-Mode Linux guest whose root is the host's / (hostfs, read-only).
# Mounts what the guest writes to, loads the tunnel modules, then serves commands from the
# host over the console (guest-shell.ts) until the host closes it, then powers off.
# The kernel hands unknown key=value boot arguments to init as environment: IPIP_REPO, and
# IPIP_ROOT=overlay for a node that runs containers (kubelet-node.ts).
#
# IPIP_ROOT=overlay: containerd and runc need a root they can write (image snapshots,
# /var/lib/kubelet, /etc/containerd) that is also a real mount runc can pivot_root away
# from. So the read-only hostfs root becomes the lower layer of an overlay whose upper is
# a tmpfs (what the guest writes stays in its memory), the guest pivots into it, and this
# script starts again there.
if [ "$IPIP_ROOT" = overlay ] && [ "$IPIP_PIVOTED" != 1 ]; then
  mount -t tmpfs -o mode=0755 tmpfs /mnt
  mkdir -p /mnt/upper /mnt/work /mnt/root
  mount -t overlay overlay -o lowerdir=/,upperdir=/mnt/upper,workdir=/mnt/work /mnt/root
  mkdir -p /mnt/root/.hostfs
  cd /mnt/root && pivot_root . .hostfs
  export IPIP_PIVOTED=1
  exec chroot . /bin/sh "$IPIP_REPO/test/harness/guest-init.sh"
fi
if [ "$IPIP_PIVOTED" = 1 ]; then
  # The hostfs root stays the overlay's lower layer; its own mount point is not needed.
  umount -l /.hostfs
  mount -t devtmpfs devtmpfs /dev
  mkdir -p /dev/pts /dev/shm
  mount -t devpts devpts /dev/pts
  mount -t tmpfs tmpfs /dev/shm
fi
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmpfs /run
# The checkout must stay visible: cover /tmp with a tmpfs only if the checkout is not in it.
case "$IPIP_REPO" in
  /tmp/*) mkdir -p /run/tmp; export TMPDIR=/run/tmp ;;
  *) mount -t tmpfs tmpfs /tmp ;;
esac
mkdir -p /run/netns /run/lab
echo 1 > /proc/sys/kernel/printk   # keep kernel messages off the console we talk over
M=/usr/lib/uml/modules/$(uname -r)/kernel
# A kernel with no modules dir (the project's own, scripts/uml-kernel.sh) has them built in.
if [ -d "$M" ]; then
  for m in net/ipv4/tunnel4.ko net/ipv4/ip_tunnel.ko net/ipv4/ipip.ko drivers/net/veth.ko; do
    insmod "$M/$m" || echo "guest-init: insmod $m failed"
  done
fi
ip link set lo up
export PATH="$IPIP_REPO/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export HOME=/run
cd "$IPIP_REPO" && node test/harness/guest-shell.ts
echo o > /proc/sysrq-trigger
sleep 30
