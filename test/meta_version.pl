#!/usr/bin/perl
# META.json (PGXN) must describe the release the control file installs:
# its version, the version of the extension it provides, and that version's
# install script all follow default_version in lantern_fdw.control.
#   perl test/meta_version.pl <repository root>
use strict;
use warnings;
use JSON::PP;

my $root = shift // '.';
my @problems;

open my $cf, '<', "$root/lantern_fdw.control" or die "lantern_fdw.control: $!\n";
my ($control) = map { /^\s*default_version\s*=\s*'([^']+)'/ ? $1 : () } <$cf>;
close $cf;
die "lantern_fdw.control has no default_version\n" unless defined $control;

open my $mf, '<', "$root/META.json" or die "META.json: $!\n";
my $meta = JSON::PP->new->decode(do { local $/; <$mf> });
close $mf;

my $ext = $meta->{provides}{lantern_fdw}
  or die "META.json: provides.lantern_fdw is missing\n";
push @problems, "META.json version is '$meta->{version}', the control file's default_version is '$control'"
  if ($meta->{version} // '') ne $control;
push @problems, "META.json provides.lantern_fdw.version is '$ext->{version}', the control file's default_version is '$control'"
  if ($ext->{version} // '') ne $control;
my $script = "sql/lantern_fdw--$control.sql";
push @problems, "META.json provides.lantern_fdw.file is '$ext->{file}', expected '$script'"
  if ($ext->{file} // '') ne $script;
push @problems, "$script does not exist" unless -f "$root/$script";
for my $key (qw(name abstract maintainer license meta-spec)) {
	push @problems, "META.json has no '$key' (required by the PGXN meta spec)"
	  unless defined $meta->{$key};
}

if (@problems) {
	print "not ok: $_\n" for @problems;
	exit 1;
}
print "ok: META.json and lantern_fdw.control agree on version $control\n";
