#!/usr/bin/env bash
# mkdisk.sh - build a realistic raw VM disk image for cairn tests and benchmarks.
#
# Needs no root and no mounts: the file systems are built with `mkfs.ext4 -d`
# from staging directories, the partition table is written with sfdisk on the
# image file and the file system images are placed at their partition offsets
# with `dd conv=notrunc,sparse`.
#
# Layout:
#   partition 1  256 MiB ext4 "boot": a few kernel/initrd/grub-like files
#   partition 2  ext4 "root", rest of the disk:
#                - world-readable files copied from this machine (/etc, /usr,
#                  /var/lib/dpkg, ...), skipping sockets, devices and fifos
#                - one subtree copied twice under other names (~10% of --data:
#                  duplicate content)
#                - seeded pseudo-random (incompressible) files (~5%)
#                - sparse files, hard links, symlinks (relative, absolute,
#                  dangling, long, to a directory), odd file names
#   partition 3  (--xfs SIZE) XFS "data": generated files, nested directories,
#                symlinks, an empty file, long names (built with mkfs.xfs -p)
#   partition 4  (--fat SIZE; 3 without --xfs) FAT32 "ESP": generated files and directories,
#                long and mixed-case names (built with mkfs.vfat and mcopy)
#   Everything not written by a file system stays a hole in the image.
#
# The amount of file data over both partitions is about --data. Generated
# content and partition/file system UUIDs are determined by --seed; copied
# files (and so the duplicated subtree) are whatever this machine has.
set -euo pipefail

prog=${0##*/}

usage() {
	cat <<EOF
usage: $prog --out FILE --size SIZE --data SIZE [options]

Build a raw disk image: GPT/MBR partition table, 256 MiB ext4 boot partition,
ext4 root partition filling the rest and holding about --data bytes of files.

  --out FILE          image to write (replaced if it exists)
  --size SIZE         disk size, e.g. 8G, 512M (suffixes K M G T, binary)
  --data SIZE         total file data to put on the disk, e.g. 3G, 64M
  --table gpt|mbr     partition table type (default gpt)
  --manifest FILE     write "sha256  path" for every regular file of the root
                      file system (paths relative to its root, sorted), and
                      FILE.xfs / FILE.fat likewise for the XFS / FAT partitions
  --xfs SIZE          add partition 3: an XFS file system of SIZE (at least 300M)
  --fat SIZE          add a last partition (4, or 3 without --xfs): a FAT32 file system of SIZE (at least 33M)
  --many N            put a directory /srv/many with N small files in the root
                      file system (e.g. 5000, for listing benchmarks)
  --seed N            seed for generated content and UUIDs (default 1)
  --tmpdir DIR        where to stage files (default: \$TMPDIR, else the
                      directory of --out); needs about 2x --data of free
                      space. A tmpfs (--tmpdir /dev/shm) is much faster if
                      there is that much free memory.
  -q, --quiet         only print the summary line
  -h, --help          this help

Example: $prog --out disk.raw --size 8G --data 3G --manifest files.sha256
EOF
}

die() {
	echo "$prog: error: $*" >&2
	exit 1
}

quiet=0
log() {
	((quiet)) || printf '%s: [%3ds] %s\n' "$prog" "$SECONDS" "$*" >&2
}

# parse_size "1.5G" -> bytes (binary units; plain numbers are bytes).
parse_size() {
	local s=$1 out
	out=$(awk -v s="$s" 'BEGIN {
		if (s !~ /^[0-9]+(\.[0-9]+)?([kKmMgGtT]([iI]?[bB])?|[bB])?$/) exit 1
		n = s + 0; u = toupper(substr(s, match(s, /[a-zA-Z]/), 1))
		if (u == "K") n *= 1024; else if (u == "M") n *= 1048576
		else if (u == "G") n *= 1073741824; else if (u == "T") n *= 1099511627776
		printf "%.0f\n", n }') || die "bad size '$s' (want e.g. 512M, 8G)"
	echo "$out"
}

# human BYTES -> "1.50 GiB"
human() {
	awk -v n="$1" 'BEGIN {
		split("B KiB MiB GiB TiB", u, " "); i = 1
		while (n >= 1024 && i < 5) { n /= 1024; i++ }
		printf (i == 1 ? "%d %s" : "%.2f %s"), n, u[i] }'
}

# ---------------------------------------------------------------- arguments
out= size= data= table=gpt manifest= seed=1 tmpbase= xfs= fat= many=0
while (($#)); do
	case $1 in
	--out) out=${2:?--out needs a value}; shift ;;
	--size) size=${2:?--size needs a value}; shift ;;
	--data) data=${2:?--data needs a value}; shift ;;
	--table) table=${2:?--table needs a value}; shift ;;
	--manifest) manifest=${2:?--manifest needs a value}; shift ;;
	--seed) seed=${2:?--seed needs a value}; shift ;;
	--xfs) xfs=${2:?--xfs needs a value}; shift ;;
	--fat) fat=${2:?--fat needs a value}; shift ;;
	--many) many=${2:?--many needs a value}; shift ;;
	--xfs=*) xfs=${1#*=} ;;
	--fat=*) fat=${1#*=} ;;
	--many=*) many=${1#*=} ;;
	--tmpdir) tmpbase=${2:?--tmpdir needs a value}; shift ;;
	--out=*) out=${1#*=} ;;
	--size=*) size=${1#*=} ;;
	--data=*) data=${1#*=} ;;
	--table=*) table=${1#*=} ;;
	--manifest=*) manifest=${1#*=} ;;
	--seed=*) seed=${1#*=} ;;
	--tmpdir=*) tmpbase=${1#*=} ;;
	-q | --quiet) quiet=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
	shift
done
[[ -n $out && -n $size && -n $data ]] || { usage >&2; die "--out, --size and --data are required"; }
[[ $table == gpt || $table == mbr ]] || die "--table must be gpt or mbr"
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer"
[[ $many =~ ^[0-9]+$ ]] || die "--many must be a non-negative integer"

# ------------------------------------------------------------- requirements
missing=()
need() { # need PACKAGE COMMAND...
	local pkg=$1 c
	shift
	for c; do
		command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$c" >/dev/null 2>&1 ||
			missing+=("$c (package $pkg)")
	done
}
need e2fsprogs mkfs.ext4 e2fsck
[[ -n $xfs ]] && need xfsprogs mkfs.xfs
[[ -n $fat ]] && need dosfstools mkfs.vfat && need mtools mcopy
need fdisk sfdisk
need coreutils dd truncate du sha256sum cksum sort split stat head wc mktemp cp ln realpath nproc
need findutils find xargs
need tar tar
need perl-base perl
need mawk awk
if ((${#missing[@]})); then
	printf '%s: missing command: %s\n' "$prog" "${missing[@]}" >&2
	die "install the packages above, e.g. apt-get install e2fsprogs fdisk"
fi
export PATH=$PATH:/usr/sbin:/sbin

MiB=1048576
size_b=$(parse_size "$size")
data_b=$(parse_size "$data")
size_mib=$((size_b / MiB))
boot_start_mib=1
boot_mib=256
root_start_mib=$((boot_start_mib + boot_mib))
# Keep the last MiB free for the GPT backup header (and symmetry for MBR).
xfs_mib=0 fat_mib=0
[[ -n $xfs ]] && xfs_mib=$(($(parse_size "$xfs") / MiB))
[[ -n $fat ]] && fat_mib=$(($(parse_size "$fat") / MiB))
[[ -n $xfs ]] && ((xfs_mib < 300)) && die "--xfs $xfs is too small: mkfs.xfs needs at least 300M"
[[ -n $fat ]] && ((fat_mib < 33)) && die "--fat $fat is too small: FAT32 needs at least 33M"
root_mib=$((size_mib - root_start_mib - 1 - xfs_mib - fat_mib))
((root_mib >= 64)) || die "--size $size is too small: need at least $(((root_start_mib + 65)))M (256M boot + 64M root)"
root_b=$((root_mib * MiB))

# Budgets (bytes of file data).
boot_data=$((data_b * 3 / 100))
((boot_data < 2 * MiB)) && boot_data=$((2 * MiB))
((boot_data > 48 * MiB)) && boot_data=$((48 * MiB))
root_data=$((data_b - boot_data))
((data_b >= 8 * MiB)) || die "--data $data is too small (need at least 8M)"
# ext4 needs room for its journal, inode tables and reserved blocks.
root_cap=$((root_b * 85 / 100 - 16 * MiB))
((root_data <= root_cap)) ||
	die "--data $data does not fit in a ${root_mib} MiB root partition (max about $(human "$root_cap")); use a bigger --size"
rand_data=$((data_b * 5 / 100))   # seeded incompressible files
dup_each=$((data_b * 5 / 100))    # the duplicated subtree, copied twice
island=$((data_b / 64 / 3))        # data inside sparse files, 3 islands
((island > MiB)) && island=$MiB
island=$((island / 4096 * 4096))
real_data=$((root_data - rand_data - 2 * dup_each - 3 * island))

# ------------------------------------------------------------------ temp dir
# Absolute paths: later steps run in other directories.
out=$(realpath -m -- "$out")
[[ -n $manifest ]] && manifest=$(realpath -m -- "$manifest")
out_dir=$(dirname -- "$out")
[[ -d $out_dir ]] || die "directory $out_dir does not exist"
[[ -n $manifest && ! -d ${manifest%/*} ]] && die "directory ${manifest%/*} does not exist"
tmpbase=${tmpbase:-${TMPDIR:-$out_dir}}
[[ -d $tmpbase ]] || die "temporary directory $tmpbase does not exist"
tmpbase=$(realpath -- "$tmpbase")
tmp=$(mktemp -d "$tmpbase/mkdisk.XXXXXX")
ok=0
# descendants PID...: print the PIDs of all processes below the given ones.
descendants() {
	local f st pid ppid
	local -A kids=()
	for f in /proc/[0-9]*/stat; do
		{ st=$(<"$f"); } 2>/dev/null || continue
		pid=${st%% *}
		st=${st##*) }   # skip "pid (comm) ", comm may contain spaces
		ppid=${st#* }
		ppid=${ppid%% *}
		kids[$ppid]+=" $pid"
	done
	local queue=("$@") p c
	while ((${#queue[@]})); do
		p=${queue[0]}
		queue=("${queue[@]:1}")
		for c in ${kids[$p]:-}; do
			echo "$c"
			queue+=("$c")
		done
	done
}
cleanup() {
	local rc=$?
	set +e
	trap - INT TERM
	# Stop what runs in the background (copying, hashing, removing) and the
	# processes those jobs started, before removing their files.
	local jl
	jl=$(jobs -p)
	if [[ -n $jl ]]; then
		# shellcheck disable=SC2046
		kill $(descendants $jl) $jl 2>/dev/null
		wait 2>/dev/null
	fi
	rm -rf -- "$tmp"
	if ((!ok)); then
		rm -f -- "$out.mkdisk-tmp"
		[[ -n $manifest ]] && rm -f -- "$manifest.mkdisk-tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stage=$tmp/root
bstage=$tmp/boot
mkdir -p "$stage" "$bstage"
chmod 755 "$stage" "$bstage"

# interruptible CMD...: run a long command in the background and wait for it,
# so that a signal is handled (and the command killed by cleanup) at once.
interruptible() {
	"$@" &
	wait $!
}

# --------------------------------------------------------- seeded generators
# seed_of LABEL -> 32-bit number derived from --seed and LABEL.
seed_of() {
	local c
	c=$(printf '%s/%s' "$seed" "$1" | cksum)
	echo "${c%% *}"
}

# uuid_of LABEL -> UUID (version 4 layout) derived from --seed and LABEL.
uuid_of() {
	local h
	h=$(printf 'cairn-mkdisk/%s/%s' "$seed" "$1" | sha256sum)
	echo "${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}"
}

# gen_random BYTES LABEL FILE: incompressible, unique, reproducible content.
gen_random() {
	perl -e '
		my ($n, $s) = @ARGV; srand($s); binmode STDOUT;
		while ($n > 0) {
			my $c = $n < 65536 ? $n : 65536;
			my $b = pack("N*", map { int(rand(4294967296)) } 1 .. (($c + 3) >> 2));
			print substr($b, 0, $c); $n -= $c;
		}' "$1" "$(seed_of "$2")" >"$3"
}

# gen_text BYTES LABEL FILE: compressible log-like text with unique lines.
gen_text() {
	perl -e '
		my ($n, $s) = @ARGV; srand($s); binmode STDOUT;
		my @lv = qw(INFO INFO INFO INFO DEBUG WARN ERROR);
		my @w = qw(request backup chunk upload snapshot restore disk retry
			done latency cache index pack verify prune lock session);
		my $t = 1767225600 + int(rand(3e7)); my $buf = "";
		while ($n > 0) {
			$t += int(rand(5));
			my @g = gmtime($t);
			$buf .= sprintf("%04d-%02d-%02dT%02d:%02d:%02dZ node%02d cairn[%d]: %-5s %s %s id=%08x bytes=%d took=%.3fms\n",
				$g[5] + 1900, $g[4] + 1, $g[3], $g[2], $g[1], $g[0], int(rand(12)), 1000 + int(rand(30000)),
				$lv[rand @lv], $w[rand @w], $w[rand @w], int(rand(4294967296)), int(rand(1 << 24)), rand(900));
			if (length($buf) >= 65536 || length($buf) >= $n) {
				$buf = substr($buf, 0, $n) if length($buf) > $n;
				print $buf; $n -= length($buf); $buf = "";
			}
		}' "$1" "$(seed_of "$2")" >"$3"
}

# ------------------------------------------------------ partition 2: real files
log "disk $(human "$size_b") ($table), root partition ${root_mib} MiB, target data $(human "$data_b")"

sources=(/etc /var/lib/dpkg /var/lib/apt /usr/bin /usr/sbin /usr/lib /usr/share /usr/include
	/usr/libexec /usr/local /usr/src /opt /var/cache/debconf /var/lib /var/log /usr/games)
existing=()
for s in "${sources[@]}"; do
	[[ -d $s && ! -L $s ]] && existing+=("$s")
done
# Skip our own output and temp files if they are inside a source tree.
excl_tmp=$(cd -- "$tmp" && pwd -P)

log "selecting up to $(human "$real_data") of world-readable files from ${existing[*]}"
# One line per candidate: "SOURCE-INDEX<TAB>SIZE<TAB>path". Only
# world-readable regular files and symlinks below world-readable directories
# (no secrets such as /etc/shadow or host keys); names containing newlines or
# backslashes are skipped so that file lists and the manifest stay
# line-oriented. No source can get more than the whole budget, so the walk of
# a source stops (in directory order) once it has found that much.
list_candidates() {
	local i
	for i in "${!existing[@]}"; do
		find "${existing[$i]}" -xdev \
			\( -path "$out" -o -path "$out.mkdisk-tmp" -o -path "$excl_tmp" -o -name $'*\n*' -o -name '*\\*' \
			-o \( -type d ! -perm -o=rx \) -o \( -type d ! -readable \) \) -prune \
			-o \( -type f -perm -o=r -readable -o -type l \) -printf "$i\t%s\t%p\n" \
			2>/dev/null | awk -F '\t' -v b="$real_data" '{ print; s += $2 } s > b * 1.2 { exit }' |
			LC_ALL=C sort -t $'\t' -k3 || true
	done
}
# mke2fs -d adds directory entries in time linear in the directory size, so a
# huge directory (e.g. 18k man pages in one folder) makes mkfs quadratic and
# slow: take at most this many entries of any one directory.
max_dir_entries=3000
# Spread the budget over the sources by water-filling: every source gets the
# same quota L (or all it has, if less), with L chosen so the quotas add up to
# the budget. Within a source, files are taken in path order while they fit
# into its quota, so small disks still get a bit of /etc, dpkg, binaries,
# libraries and /usr/share; what the quotas leave unused is then topped up.
list_candidates | awk -F '\t' -v budget="$real_data" -v maxdir="$max_dir_entries" -v sizes="$tmp/real.sizes" '
	{
		p = substr($0, length($1) + length($2) + 3)
		if (substr(p, 1, 1) == "/") p = substr(p, 2)
		if (p in seen) next          # sources overlap (/var/lib/dpkg, /var/lib)
		seen[p] = 1
		d = p; sub(/\/[^\/]*$/, "", d)
		if (++entries[d] > maxdir) next
		n++; S[n] = $1; Z[n] = $2 + 0; P[n] = p
		if (!($1 in avail)) order[++ns] = $1
		avail[$1] += $2
	}
	END {
		lo = 0; hi = budget
		for (k = 0; k < 64; k++) {
			mid = (lo + hi) / 2; t = 0
			for (i = 1; i <= ns; i++) { a = avail[order[i]]; t += (a < mid ? a : mid) }
			if (t < budget) lo = mid; else hi = mid
		}
		for (i = 1; i <= ns; i++) { a = avail[order[i]]; quota[order[i]] = (a < hi ? a : hi) }
		total = 0
		for (i = 1; i <= n; i++) {
			s = S[i]
			if (used[s] >= quota[s] * 0.999 || Z[i] > quota[s] - used[s]) continue
			took[i] = 1; used[s] += Z[i]; total += Z[i]
		}
		# Quotas leave gaps (files that did not fit): top up in order.
		for (i = 1; i <= n && total < budget * 0.999; i++) {
			if ((i in took) || Z[i] > budget - total) continue
			took[i] = 1; total += Z[i]
		}
		for (i = 1; i <= n; i++)
			if (i in took) printf "%s\t%s\n", Z[i], P[i] > sizes
		printf "%.0f\n", total > "/dev/stderr"
	}' 2>"$tmp/real.total"
cut -f2- "$tmp/real.sizes" >"$tmp/real.list"
real_total=$(<"$tmp/real.total")
real_count=$(wc -l <"$tmp/real.list")
log "copying $real_count entries ($(human "$real_total"))"
# Two tar pipelines in parallel (reading many small files is latency bound).
# Files that vanish or change while being read are tolerated (tar exit 1).
copy_part() {
	set +e
	tar -C / --no-recursion --no-unquote --verbatim-files-from --ignore-failed-read \
		--warning=no-file-changed --warning=no-file-removed -T "$1" -cf - 2>"$1.err" |
		tar -C "$stage" -xpf - 2>>"$1.err"
	local st=("${PIPESTATUS[@]}")
	((st[0] <= 1 && st[1] == 0)) || { echo "tar exit ${st[*]}" >>"$1.err"; return 1; }
}
split -n l/2 -d "$tmp/real.list" "$tmp/copy."
pids=()
for part in "$tmp"/copy.??; do
	copy_part "$part" &
	pids+=($!)
done
for k in "${!pids[@]}"; do
	wait "${pids[$k]}" || { cat "$tmp"/copy.*.err >&2; die "copying files with tar failed"; }
done

# A root file system skeleton (merged /usr like Debian 12).
for d in boot dev home/alice/Documents home/alice/Pictures media mnt proc root run srv sys tmp var/tmp \
	var/lib/libvirt/images var/lib/postgresql/15/main/base var/log/cairn usr/local/bin opt/empty-dir; do
	mkdir -p "$stage/$d"
done
chmod 1777 "$stage/tmp" "$stage/var/tmp"
chmod 700 "$stage/root"
for l in bin sbin lib lib64; do
	[[ -e $stage/$l || -L $stage/$l ]] || ln -s "usr/$l" "$stage/$l"
done

# ------------------------------------------------------ duplicated subtree
dup_total=0
if ((dup_each > 0)); then
	# Pick the directory whose size is closest to dup_each (by ratio).
	best=$(cd "$stage" && du -b --apparent-size usr etc var opt 2>/dev/null |
		awk -F '\t' -v t="$dup_each" '
			$2 ~ /\// && $1 > 0 { r = log($1 / t); if (r < 0) r = -r
				if (best == "" || r < br) { best = $2; br = r; bs = $1 } }
			END { if (best != "" && br < 0.5) printf "%s\t%s\n", bs, best }') || true
	mkdir -p "$stage/srv/mirror" "$stage/home/alice/backup"
	if [[ -n $best ]]; then
		dsize=${best%%$'\t'*}
		dpath=${best#*$'\t'}
		name=${dpath##*/}
		log "duplicating /$dpath ($(human "$dsize")) as /srv/mirror/$name and /home/alice/backup/$name.old"
		interruptible cp -a "$stage/$dpath" "$stage/srv/mirror/$name"
		interruptible cp -a "$stage/$dpath" "$stage/home/alice/backup/$name.old"
		dup_total=$((2 * dsize))
	else
		# No directory of about the right size: copy a run of consecutive
		# files instead (still a "subtree" of sorted paths).
		log "duplicating a run of copied files ($(human "$dup_each")) twice"
		awk -F '\t' -v t="$dup_each" '
			{ print substr($0, length($1) + 2); sum += $1 }
			sum >= t { exit }' "$tmp/real.sizes" >"$tmp/dup.list"
		for dst in srv/mirror/files home/alice/backup/files.old; do
			mkdir -p "$stage/$dst"
			tar -C "$stage" --no-recursion --no-unquote --verbatim-files-from -T "$tmp/dup.list" -cf - |
				tar -C "$stage/$dst" -xpf -
		done
		dup_total=$((2 * $(cd "$stage/srv/mirror/files" && find . -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')))
	fi
fi

# ------------------------------------------------------ generated content
log "generating $(human "$rand_data") of seeded random files, sparse files, links"
gen_total=0
i=0
left=$rand_data
while ((left > 0)); do
	i=$((i + 1))
	# Sizes between 64 KiB and 8 MiB, varying with the seed.
	sz=$(((($(seed_of "imgsize$i") % 128) + 1) * 64 * 1024))
	((sz > left)) && sz=$left
	gen_random "$sz" "img$i" "$stage/home/alice/Pictures/IMG_$(printf %04d "$i").jpg"
	left=$((left - sz))
	gen_total=$((gen_total + sz))
done

# Sparse files: a pure hole, a database-like file with data islands, and a
# file whose only data is at the very end.
sparse_big=$((data_b < 1024 * MiB ? data_b : 1024 * MiB))
truncate -s "$sparse_big" "$stage/var/lib/libvirt/images/empty-thin.img"
db=$stage/var/lib/postgresql/15/main/base/16384
truncate -s $((64 * MiB)) "$db"
if ((island > 0)); then
	for k in 0 1 2; do
		gen_random "$island" "island$k" "$tmp/island"
		dd if="$tmp/island" of="$db" bs=4096 seek=$(((k * 21 * MiB + k * 12288) / 4096)) conv=notrunc status=none
		gen_total=$((gen_total + island))
	done
	rm -f "$tmp/island"
fi
truncate -s $((32 * MiB - 4096)) "$stage/var/log/lastlog"
gen_text 4096 lastlog "$tmp/tail"
cat "$tmp/tail" >>"$stage/var/log/lastlog"
gen_total=$((gen_total + 4096))

# Text files, odd names, empty file.
gen_text $((64 * 1024)) notes "$stage/home/alice/Documents/notes.txt"
gen_text $((200 * 1024)) log "$stage/var/log/cairn/agent.log"
printf 'résumé\n' >"$stage/home/alice/Documents/café résumé (final) #2.txt"
printf 'spaces\n' >"$stage/home/alice/Documents/  leading and trailing spaces  "
: >"$stage/home/alice/Documents/empty"
mkdir -p "$stage/home/alice/Documents/deep/a/b/c/d/e/f/g/h/i/j"
printf 'deep\n' >"$stage/home/alice/Documents/deep/a/b/c/d/e/f/g/h/i/j/leaf.txt"
gen_total=$((gen_total + 264 * 1024 + 17))

# Hard links: a group of three, and a link to a copied binary if there is one.
ln "$stage/home/alice/Documents/notes.txt" "$stage/home/alice/notes-hardlink.txt"
ln "$stage/home/alice/Documents/notes.txt" "$stage/srv/notes.txt"
ln "$stage/var/log/cairn/agent.log" "$stage/var/log/cairn/agent.log.1"
bin=$(cd "$stage" && find usr/bin -maxdepth 1 -type f -size +1k 2>/dev/null | LC_ALL=C sort | head -n 1 || true)
[[ -n $bin ]] && ln "$stage/$bin" "$stage/usr/local/bin/${bin##*/}.hardlink"

# Symlinks: relative, absolute, dangling, to a directory, and one whose target
# is too long to be stored inside the inode.
ln -s Pictures/IMG_0001.jpg "$stage/home/alice/latest.jpg"
ln -s /etc/hostname "$stage/home/alice/hostname"
ln -s ../does/not/exist "$stage/home/alice/dangling"
ln -s ../home/alice "$stage/srv/www"
ln -s "Documents/deep/a/b/c/d/e/f/g/h/i/j/../../../../../../../../../../../deep/a/b/c/d/e/f/g/h/i/j/leaf.txt" \
	"$stage/home/alice/long-symlink"

# Fill up if this machine did not have enough readable files.
short=$((real_data - real_total))
if ((short > real_data / 100 + MiB)); then
	log "only $(human "$real_total") of files to copy, generating $(human "$short") more"
	mkdir -p "$stage/srv/data"
	i=0
	while ((short > 0)); do
		i=$((i + 1))
		sz=$((short < 16 * MiB ? short : 16 * MiB))
		if ((i % 2)); then
			gen_text "$sz" "fill$i" "$stage/srv/data/log-$(printf %05d "$i").txt"
		else
			gen_random "$sz" "fill$i" "$stage/srv/data/blob-$(printf %05d "$i").bin"
		fi
		short=$((short - sz))
		gen_total=$((gen_total + sz))
	done
fi

# ------------------------------------------------------ boot partition
boot_uuid=$(uuid_of boot)
root_uuid=$(uuid_of root)
kver=6.1.0-cairn-amd64
mkdir -p "$bstage/grub" "$bstage/efi"
gen_random $((boot_data * 35 / 100)) vmlinuz "$bstage/vmlinuz-$kver"
gen_random $((boot_data * 50 / 100)) initrd "$bstage/initrd.img-$kver"
gen_text $((boot_data * 10 / 100)) sysmap "$bstage/System.map-$kver"
gen_text $((boot_data * 5 / 100)) config "$bstage/config-$kver"
cat >"$bstage/grub/grub.cfg" <<EOF
set default=0
set timeout=5
menuentry 'Debian GNU/Linux ($kver)' {
	search --no-floppy --fs-uuid --set=root $boot_uuid
	linux /vmlinuz-$kver root=UUID=$root_uuid ro quiet
	initrd /initrd.img-$kver
}
EOF
ln -s "vmlinuz-$kver" "$bstage/vmlinuz"
ln -s "initrd.img-$kver" "$bstage/initrd.img"
cat >"$stage/etc/fstab" <<EOF
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$root_uuid / ext4 errors=remount-ro 0 1
UUID=$boot_uuid /boot ext4 defaults 0 2
EOF
printf 'cairn-test-%s\n' "$seed" >"$stage/etc/hostname"

# A big directory, for listing benchmarks.
if ((many > 0)); then
	mkdir -p "$stage/srv/many"
	perl -e 'my ($d, $n) = @ARGV; for my $i (1 .. $n) {
		open(my $f, ">", sprintf("%s/entry-%05d.conf", $d, $i)) or die; print $f "entry $i\n"; close $f }' \
		"$stage/srv/many" "$many"
fi

# ------------------------------------------------------ extra partitions' files
# gen_small_tree DIR LABEL SYMLINKS: a small generated tree for the XFS and
# FAT partitions: text and random files, nested directories, long names.
gen_small_tree() {
	local d=$1 l=$2 i
	mkdir -p "$d/docs/reports/2026" "$d/media" "$d/empty-dir"
	gen_text $((96 * 1024)) "$l-notes" "$d/docs/notes.txt"
	gen_text $((300 * 1024 + 17)) "$l-log" "$d/docs/reports/2026/Quarterly_Report_Q3.txt"
	gen_random $((1024 * 1024 + 4096)) "$l-img" "$d/media/Photo_With_A_Rather_Long_File_Name_0001.jpg"
	gen_random 12345 "$l-small" "$d/media/small.bin"
	: >"$d/docs/empty"
	for i in $(seq 1 40); do
		gen_text $((i * 997)) "$l-f$i" "$d/docs/reports/file$i.log"
	done
	if (($3)); then
		ln -s notes.txt "$d/docs/notes-link"
		ln -s ../docs/reports/2026 "$d/media/reports"
	fi
}
if [[ -n $xfs ]]; then
	gen_small_tree "$tmp/xfs" xfs 1
fi
if [[ -n $fat ]]; then
	gen_small_tree "$tmp/fat" fat 0
	mkdir -p "$tmp/fat/EFI/BOOT"
	gen_random 65536 efi "$tmp/fat/EFI/BOOT/BOOTX64.EFI"
fi
# extra_manifest DIR FILE: the manifest of a staging tree.
extra_manifest() {
	(cd "$1" && find . -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 -r sha256sum --) >"$2"
}

# ------------------------------------------------------ manifest (background)
(cd "$stage" && find . -type f -printf '%P\n' | LC_ALL=C sort) >"$tmp/files.list"
nfiles=$(wc -l <"$tmp/files.list")
nboot=$(cd "$bstage" && find . -type f | wc -l)
manifest_pid=
if [[ -n $manifest ]]; then
	log "hashing $nfiles files for the manifest (in the background)"
	(
		cd "$stage"
		jobsn=$(nproc 2>/dev/null || echo 2)
		((jobsn > 4)) && jobsn=4
		split -n "l/$jobsn" -d "$tmp/files.list" "$tmp/hash.in."
		for part in "$tmp"/hash.in.*; do
			xargs -r -d '\n' -a "$part" sha256sum -- >"${part%/*}/hash.out.${part##*.}" &
		done
		wait
		cat "$tmp"/hash.out.* | LC_ALL=C sort -k2 >"$manifest.mkdisk-tmp"
	) &
	manifest_pid=$!
fi

# ------------------------------------------------------ file systems
inodes_needed=$(($(cd "$stage" && find . | wc -l) * 5 / 4 + 1024))
inodes_default=$((root_b / 16384))
nopt=()
((inodes_needed > inodes_default)) && nopt=(-N "$inodes_needed")

log "making ext4 file systems (boot 256 MiB, root ${root_mib} MiB)"
truncate -s $((boot_mib * MiB)) "$tmp/boot.img"
mkfs.ext4 -F -q -b 4096 -L boot -U "$boot_uuid" -E "hash_seed=$boot_uuid,root_owner=0:0" \
	-d "$bstage" "$tmp/boot.img" || die "mkfs.ext4 for the boot file system failed"
rm -rf -- "$bstage"
truncate -s "$root_b" "$tmp/root.img"
interruptible mkfs.ext4 -F -q -b 4096 -L root -U "$root_uuid" -E "hash_seed=$root_uuid,root_owner=0:0" "${nopt[@]}" \
	-d "$stage" "$tmp/root.img" || die "mkfs.ext4 for the root file system failed (data does not fit?)"

# xfs_proto DIR: an mkfs.xfs prototype file describing DIR (regular files,
# directories, symlinks; names without white space).
xfs_proto() {
	perl -e '
		use strict; my $root = shift;
		sub walk { my ($dir, $depth) = @_;
			opendir(my $dh, $dir) or die "$dir: $!"; my @n = sort grep { $_ ne "." && $_ ne ".." } readdir($dh); closedir $dh;
			for my $n (@n) {
				die "name with white space: $dir/$n\n" if $n =~ /\s/;
				my $p = "$dir/$n"; my @st = lstat($p) or die "$p: $!"; my $perm = sprintf("%03o", $st[2] & 0777);
				my $ind = " " x $depth;
				if (-l $p) { printf "%s%s l--%s %d %d %s\n", $ind, $n, $perm, $st[4], $st[5], readlink($p) }
				elsif (-d $p) { printf "%s%s d--%s %d %d\n", $ind, $n, $perm, $st[4], $st[5]; walk($p, $depth + 1); print "$ind\$\n" }
				elsif (-f $p) { printf "%s%s ---%s %d %d %s\n", $ind, $n, $perm, $st[4], $st[5], $p }
			}
		}
		print "/dev/null\n0 0\nd--755 0 0\n"; walk($root, 1); print "\$\n";' "$1"
}
if [[ -n $xfs ]]; then
	log "making XFS file system (${xfs_mib} MiB)"
	xfs_proto "$tmp/xfs" >"$tmp/xfs.proto" || die "describing the XFS files failed"
	truncate -s $((xfs_mib * MiB)) "$tmp/xfs.img"
	mkfs.xfs -q -f -L data -m uuid="$(uuid_of xfs)" -p "$tmp/xfs.proto" "$tmp/xfs.img" || die "mkfs.xfs failed"
	[[ -n $manifest ]] && extra_manifest "$tmp/xfs" "$manifest.xfs"
fi
if [[ -n $fat ]]; then
	log "making FAT32 file system (${fat_mib} MiB)"
	truncate -s $((fat_mib * MiB)) "$tmp/fat.img"
	mkfs.vfat -F 32 -n ESP -i "$(uuid_of fat | cut -c1-8)" "$tmp/fat.img" >/dev/null || die "mkfs.vfat failed"
	(cd "$tmp/fat" && MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$tmp/fat.img" ./* ::/) || die "mcopy failed"
	[[ -n $manifest ]] && extra_manifest "$tmp/fat" "$manifest.fat"
fi

# ------------------------------------------------------ partition table
log "writing $table partition table"
img=$out.mkdisk-tmp
rm -f -- "$img"
truncate -s "$size_b" "$img"
# The staging tree is no longer needed: remove it while the image is written.
if [[ -n $manifest_pid ]]; then
	wait "$manifest_pid" || die "hashing files for the manifest failed"
fi
rm -rf -- "$stage" &
rm_pid=$!
sector=512
if [[ $table == gpt ]]; then
	label=gpt
	p1="start=$((boot_start_mib * MiB / sector)), size=$((boot_mib * MiB / sector)), type=L, name=\"boot\", uuid=$(uuid_of part1)"
	p2="start=$((root_start_mib * MiB / sector)), size=$((root_b / sector)), type=L, name=\"root\", uuid=$(uuid_of part2)"
	lid="label-id: $(uuid_of disk)"
	xfs_type=L fat_type=U
	xfs_extra=", name=\"data\", uuid=$(uuid_of part3)" fat_extra=", name=\"ESP\", uuid=$(uuid_of part4)"
else
	label=dos
	p1="start=$((boot_start_mib * MiB / sector)), size=$((boot_mib * MiB / sector)), type=83, bootable"
	p2="start=$((root_start_mib * MiB / sector)), size=$((root_b / sector)), type=83"
	lid="label-id: 0x$(uuid_of disk | cut -c1-8)"
	xfs_type=83 fat_type=c xfs_extra= fat_extra=
fi
extra=
next_mib=$((root_start_mib + root_mib))
if [[ -n $xfs ]]; then
	extra+="start=$((next_mib * MiB / sector)), size=$((xfs_mib * MiB / sector)), type=$xfs_type$xfs_extra"$'\n'
	xfs_start_mib=$next_mib
	next_mib=$((next_mib + xfs_mib))
fi
if [[ -n $fat ]]; then
	extra+="start=$((next_mib * MiB / sector)), size=$((fat_mib * MiB / sector)), type=$fat_type$fat_extra"$'\n'
	fat_start_mib=$next_mib
fi
printf 'label: %s\n%s\nunit: sectors\n\n%s\n%s\n%s' "$label" "$lid" "$p1" "$p2" "$extra" |
	sfdisk --quiet --no-reread --no-tell-kernel "$img" >/dev/null || die "sfdisk failed"

log "placing file systems at their partition offsets"
dd if="$tmp/boot.img" of="$img" bs=1M oflag=seek_bytes seek=$((boot_start_mib * MiB)) conv=notrunc,sparse status=none
rm -f -- "$tmp/boot.img"
interruptible dd if="$tmp/root.img" of="$img" bs=1M oflag=seek_bytes seek=$((root_start_mib * MiB)) conv=notrunc,sparse status=none
rm -f -- "$tmp/root.img"
if [[ -n $xfs ]]; then
	dd if="$tmp/xfs.img" of="$img" bs=1M oflag=seek_bytes seek=$((xfs_start_mib * MiB)) conv=notrunc,sparse status=none
	rm -f -- "$tmp/xfs.img"
fi
if [[ -n $fat ]]; then
	dd if="$tmp/fat.img" of="$img" bs=1M oflag=seek_bytes seek=$((fat_start_mib * MiB)) conv=notrunc,sparse status=none
	rm -f -- "$tmp/fat.img"
fi

wait "$rm_pid" || true
[[ -n $manifest ]] && mv -f -- "$manifest.mkdisk-tmp" "$manifest"
mv -f -- "$img" "$out"
ok=1

data_total=$((real_total + dup_total + gen_total + boot_data))
alloc=$(du -B1 -- "$out" | cut -f1)
printf '%s: %s disk (%s), %s allocated, ~%s file data, %d files in root + %d in boot, %ds\n' \
	"$out" "$(human "$size_b")" "$table" "$(human "$alloc")" "$(human "$data_total")" "$nfiles" "$nboot" "$SECONDS"
