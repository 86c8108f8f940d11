#!/bin/sh
# Guest side of the block and network benchmarks; lives at /bench/guest.sh in the benchmark image.
#
#   guest.sh IMAGEDEV blk SECONDS              fio on the other virtio disk (seq 1M write/read,
#                                              4K random write/read), O_DIRECT, libaio, iodepth 16
#   guest.sh IMAGEDEV net ADDR SERVER SECONDS  iperf3 to SERVER:5201, guest->host then host->guest
#
# Started by the guest's init (ember's initramfs) after it mounted this image read-only on /mnt;
# fio and iperf3 run chrooted in it. Output is a few short lines (a serial console in the
# nested test host costs ~10 ms per character): "BENCH fio NAME KiB/s IOPS",
# "BENCH iperf DIR Kbit/s". Exits non-zero when a measurement is missing.
M=/mnt
img=$1
mode=$2
shift 2
mount -t proc proc $M/proc
mount -t sysfs sys $M/sys
mount -o bind /dev $M/dev
mount -t tmpfs tmp $M/tmp
status=0

fio_job() { # name rw bs seconds dev
    line=$(chroot $M /usr/bin/fio --name="$1" --filename="$5" --rw="$2" --bs="$3" --direct=1 \
        --ioengine=libaio --iodepth=16 --runtime="$4" --ramp_time=1 --time_based --minimal 2>/tmp/fio.err)
    case $2 in
    *read) set -- "$1" "$(echo "$line" | awk -F';' '{print $7 " " $8}')" ;;
    *) set -- "$1" "$(echo "$line" | awk -F';' '{print $48 " " $49}')" ;;
    esac
    if [ -n "$2" ] && [ "$2" != " " ]; then
        echo "BENCH fio $1 $2"
    else
        echo "BENCH-ERROR fio $1: $(head -c 300 /tmp/fio.err)"
        status=1
    fi
}

iperf() { # dir server seconds [-R]
    d=$1 server=$2 secs=$3
    shift 3
    kbit=$(chroot $M /usr/bin/iperf3 -c "$server" -t "$secs" -O 1 -f k --connect-timeout 20000 "$@" \
        2>/tmp/iperf.err | awk '/receiver/ {for (i = 2; i <= NF; i++) if ($i == "Kbits/sec") print $(i - 1)}')
    if [ -n "$kbit" ]; then
        echo "BENCH iperf $d $kbit"
    else
        echo "BENCH-ERROR iperf $d: $(head -c 300 /tmp/iperf.err)"
        status=1
    fi
}

case $mode in
blk)
    secs=$1
    dev=
    for d in /dev/vd?; do [ "$d" = "$img" ] || dev=$d; done
    [ -n "$dev" ] || { echo "BENCH-ERROR no data disk"; exit 1; }
    fio_job seqwrite write 1M "$secs" "$dev"
    fio_job seqread read 1M "$secs" "$dev"
    fio_job randwrite randwrite 4k "$secs" "$dev"
    fio_job randread randread 4k "$secs" "$dev"
    ;;
net)
    addr=$1 server=$2 secs=$3
    ip link set eth0 up
    ip addr add "$addr/24" dev eth0
    iperf g2h "$server" "$secs"
    iperf h2g "$server" "$secs" -R
    ;;
*)
    echo "BENCH-ERROR unknown mode $mode"
    status=2
    ;;
esac
sync
exit $status
