# tests/kvmhost/aarch64.sh: the arm64 test host, sourced by run for --arch aarch64 on a machine
# that is not arm64 (see README.md). Debian's arm64 kernel (fetched with apt-get download by
# cross/fetch-deb, which has 9p; the cloud kernel has not) in qemu-system-aarch64 -M virt with
# EL2 (virtualization=on) and a GICv3, so that KVM inside works; a static arm64 busybox in the
# initramfs, run's init. Only arm64 programs run inside: the job runs under that busybox's sh.
# shellcheck shell=bash

# Where init puts the initramfs's busybox and its applets inside the job's root (a tmpfs): the
# host's own programs are amd64 and cannot run in the test host.
foreign_bin=/run/kvmhost/bin
modprobe=$(command -v modprobe 2>/dev/null || command -v /usr/sbin/modprobe /sbin/modprobe 2>/dev/null | head -n1)
depmod=$(command -v depmod 2>/dev/null || command -v /usr/sbin/depmod /sbin/depmod 2>/dev/null | head -n1)
[ -n "$modprobe" ] && [ -n "$depmod" ] || die "modprobe or depmod is missing: run apt-get install kmod"

# aarch64_pick_kernel: like run's pick_kernel: sets kernel, kver and kernel_why, or kernel_err;
# also moddir (a modules tree with modules.dep, for modprobe -d) and mod_dir. Debian's generic
# arm64 kernel (linux-image-arm64), which has 9p; the cloud flavour has not.
aarch64_pick_kernel() {
	local kdeb tmp
	kdeb=$("$HERE/../../cross/fetch-deb" linux-image-arm64:arm64) || {
		kernel_err="cannot fetch Debian's arm64 kernel (cross/fetch-deb linux-image-arm64:arm64 above)"
		return 1
	}
	kernel=$(ls -1 "$kdeb"/boot/vmlinuz-* 2>/dev/null | head -n1)
	kver=${kernel##*/vmlinuz-}
	if [ -z "$kernel" ] || [ ! -d "$kdeb/lib/modules/$kver/kernel" ]; then
		kernel_err="no kernel and modules in $kdeb"
		return 1
	fi
	kernel_why="the kernel of linux-image-arm64, unpacked by cross/fetch-deb"
	# The package has no modules.dep (depmod runs at install): make one beside it, once.
	moddir=$cache_root/aarch64-modules-$kver-$(stat -c '%s-%Y' "$kernel")
	mod_dir=$moddir/lib/modules
	[ -s "$mod_dir/$kver/modules.dep" ] && return 0
	if ! mkdir -p "$cache_root" || ! tmp=$(mktemp -d "$cache_root/.build.XXXXXX"); then
		kernel_err="cannot write $cache_root"
		return 1
	fi
	mkdir -p "$tmp/lib/modules/$kver"
	ln -s "$kdeb/lib/modules/$kver/kernel" "$tmp/lib/modules/$kver/kernel"
	if ! cp "$kdeb/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$tmp/lib/modules/$kver/" ||
		! "$depmod" -b "$tmp" "$kver"; then
		rm -rf "$tmp"
		kernel_err="depmod for $kver failed"
		return 1
	fi
	mv -T "$tmp" "$moddir" 2>/dev/null || rm -rf "$tmp"
}

# aarch64_requirements: fills missing/pkgs like run's x86_64 checks; sets bb and bb_run (how to
# run that busybox here: for its applet list) and MODULES.
aarch64_requirements() {
	local bbdeb
	need qemu-system-aarch64 qemu-system-arm
	need qemu-aarch64-static qemu-user-static
	need cpio cpio
	need gzip gzip
	need apt-get apt
	[ ${#missing[@]} -eq 0 ] || return 0
	bbdeb=$("$HERE/../../cross/fetch-deb" busybox-static:arm64) ||
		die "cannot fetch busybox-static:arm64 (cross/fetch-deb above)"
	bb=$bbdeb/bin/busybox
	bb_run=(qemu-aarch64-static "$bb")
	# KVM is built in; virtio_pci carries the 9p shares and the serial ports (PCIe of -M virt).
	MODULES="virtio_pci 9pnet_virtio 9p overlay virtio_console tun"
}

# aarch64_qemu: the QEMU command line (array qemu) of the test host.
aarch64_qemu() {
	# pauth-impdef: QEMU's cheap pointer authentication; the architected one is slow under TCG.
	append="console=ttyAMA0 panic=-1 quiet mitigations=off kvmhost.job=$job kvmhost.cache=$cache_mode"
	append+=" kvmhost.busybox=$foreign_bin ${EMBER_KVMHOST_APPEND:-}"
	qemu=(qemu-system-aarch64
		-nodefaults -no-user-config -display none
		-no-reboot
		-M virt,virtualization=on,gic-version=3 -accel tcg,thread=multi -cpu max,pauth-impdef=on
		-m "$memory" -smp "$cpus"
		-kernel "$boot_kernel" -initrd "$initrd"
		-append "$append"
		-chardev "file,id=kvcon,path=$(q "$log")" -serial chardev:kvcon
		-virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap"
	)
}
