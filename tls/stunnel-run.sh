#!/usr/bin/env bash
# tls/stunnel-run.sh — start stunnel in the foreground with CONF, with its
# listening sockets bound here and handed over, and the open-files soft
# limit raised to the hard limit.
#
#   tls/stunnel-run.sh CONF     (exec's stunnel: its PID is this script's)
#
# * Listening sockets: stunnel closes and re-binds the sockets it bound
#   itself on every SIGHUP (a certificate roll), refusing the connections
#   that arrive meanwhile. Sockets it received by systemd's socket-activation
#   protocol (LISTEN_FDS/LISTEN_PID, which Debian's stunnel4 understands) are
#   kept open across reloads. So this script binds every `accept =` address
#   of CONF, in file order, as descriptors 3, 4, ... and passes them that
#   way; under a systemd .socket unit (LISTEN_FDS already set) it does not.
# * Open files: stunnel derives its cap on simultaneous clients from that
#   limit (about half of it), and the usual soft limit of 1024 would make
#   stunnel the bottleneck.
set -euo pipefail
[ $# -eq 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bin=$(command -v stunnel4 || command -v stunnel) || { echo "stunnel-run.sh: stunnel not installed" >&2; exit 1; }
[ -r "$1" ] || { echo "stunnel-run.sh: cannot read $1" >&2; exit 1; }
[ -z "${LISTEN_FDS:-}" ] || exec "$bin" "$1"
# perl (perl-base, always on Debian) binds, then exec's stunnel in this same
# process, so LISTEN_PID is stunnel's PID as the protocol requires.
exec perl -MSocket=:addrinfo,SOCK_STREAM,SOL_SOCKET,SO_REUSEADDR,SOMAXCONN -MPOSIX=dup2 \
	-e '
	my ($bin, $conf) = @ARGV;
	open(my $fh, "<", $conf) or die "stunnel-run.sh: $conf: $!\n";
	my @addrs = map { /^\s*accept\s*=\s*(\S+)\s*$/ ? ($1) : () } <$fh>;
	close $fh;
	@addrs or die "stunnel-run.sh: no \"accept =\" line in $conf\n";
	my (@socks, $fd);
	for my $a (@addrs) {
		my ($host, $port) = $a =~ /^(?:\[?(.*?)\]?:)?(\d+)$/
			or die "stunnel-run.sh: $conf: cannot read accept = $a\n";
		$host = "::" if !defined $host || $host eq "";
		my ($err, @ai) = getaddrinfo($host, $port, { socktype => SOCK_STREAM, flags => AI_PASSIVE });
		die "stunnel-run.sh: accept = $a: $err\n" if $err;
		socket(my $s, $ai[0]{family}, SOCK_STREAM, 0) or die "stunnel-run.sh: socket: $!\n";
		setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "stunnel-run.sh: SO_REUSEADDR: $!\n";
		bind($s, $ai[0]{addr}) or die "stunnel-run.sh: bind $a: $!\n";
		listen($s, SOMAXCONN) or die "stunnel-run.sh: listen $a: $!\n";
		push @socks, $s;
	}
	# Move them to 3, 4, ...: first above every target (dup), so that no
	# socket is clobbered; dup2 leaves the copies without close-on-exec.
	my @tmp = map { POSIX::dup(fileno $_) } @socks;
	close $_ for @socks;
	$fd = 3;
	for my $t (@tmp) {
		dup2($t, $fd) == $fd or die "stunnel-run.sh: dup2: $!\n";
		$fd++;
	}
	POSIX::close($_) for grep { $_ >= $fd } @tmp;
	$ENV{LISTEN_FDS} = scalar @socks;
	$ENV{LISTEN_PID} = $$;
	exec { $bin } $bin, $conf or die "stunnel-run.sh: exec $bin: $!\n";
	' "$bin" "$1"
