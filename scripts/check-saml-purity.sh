#!/usr/bin/env bash
# Purity check: the SAML core (src/saml/) must stay free of I/O, async runtimes
# and clock reads, so that it can be tested with fixed inputs and fixed time.
#
#   scripts/check-saml-purity.sh [DIR]     (default: the repo's src/saml)
#
# Fails (exit 1) listing FILE:LINE for every
#   - `use` / `extern crate` / path reference of the crates tokio, axum,
#     axum_extra, hyper, tower, tower_http, redis, sqlx, reqwest
#     (grouped and multi-line `use a::{b, c}` statements are expanded);
#   - `std::fs`, `std::net` (also inside `use std::{fs, ...}`);
#   - `Utc::now`, `Local::now`, `SystemTime::now`.
# Comments (//, ///, //!, nested /* */) and string/char literals are blanked
# out before matching, so prose and messages never trigger it.
# Take the time and any file contents as parameters instead.
set -euo pipefail

if (($# == 0)); then
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    dir=src/saml
else
    dir="$1"
fi

if [[ ! -d "$dir" ]]; then
    echo "check-saml-purity: directory '$dir' not found" >&2
    exit 2
fi
if ! command -v perl >/dev/null 2>&1; then
    echo "check-saml-purity: perl is required (Debian: perl-base, always installed)" >&2
    exit 2
fi

mapfile -d '' files < <(find "$dir" -type f -name '*.rs' -print0 | sort -z)
if ((${#files[@]} == 0)); then
    echo "check-saml-purity: no .rs files under $dir (nothing to check)"
    exit 0
fi

# The checker reads the file names from its arguments; its own source is on stdin.
perl - "${files[@]}" <<'PERL'
use strict;
use warnings;

my @CRATES = qw(tokio axum axum_extra hyper tower tower_http redis sqlx reqwest);
my $crates = join '|', @CRATES;
my @findings;    # [file, line, reason]

# Blank comments and literals, keeping every newline so line numbers hold.
sub strip_rust {
    my ($src) = @_;
    my $out = '';
    my $blank = sub { my $s = shift; $s =~ s/[^\n]/ /g; $s };
    pos($src) = 0;
    my $len = length $src;
    while (pos($src) < $len) {
        if ($src =~ /\G(\/\/[^\n]*)/gc) {
            $out .= $blank->($1);
        } elsif ($src =~ /\G\/\*/gc) {
            my $depth = 1;
            $out .= '  ';
            while ($depth > 0 && pos($src) < $len) {
                if    ($src =~ /\G\/\*/gc) { $depth++; $out .= '  ' }
                elsif ($src =~ /\G\*\//gc) { $depth--; $out .= '  ' }
                elsif ($src =~ /\G(\n)/gc) { $out .= "\n" }
                elsif ($src =~ /\G./gcs)   { $out .= ' ' }
            }
        } elsif ($src =~ /\G(c?b?r(#*)")/gc) {             # raw (byte) string
            my ($open, $hashes) = ($1, $2);
            my $body = '';
            if ($src =~ /\G(.*?)"\Q$hashes\E/gcs) { $body = $1 }
            else { $body = substr($src, pos($src)); pos($src) = $len }
            $out .= $open . $blank->($body) . '"' . $hashes;
        } elsif ($src =~ /\G(c?b?")/gc) {                   # (byte/C) string
            my $open = $1;
            my $body = '';
            if ($src =~ /\G((?:[^"\\]|\\.)*)"/gcs) { $body = $1 }
            else { $body = substr($src, pos($src)); pos($src) = $len }
            $out .= $open . $blank->($body) . '"';
        } elsif ($src =~ /\G(b?'(?:[^'\\\n]|\\(?:x[0-9A-Fa-f]{2}|u\{[0-9A-Fa-f_]*\}|.))')/gc) {
            $out .= $blank->($1);                            # char literal
        } elsif ($src =~ /\G([A-Za-z_][A-Za-z0-9_]*)/gc) { # identifier / keyword
            $out .= $1;
        } elsif ($src =~ /\G(.)/gcs) {
            $out .= $1;
        }
    }
    return $out;
}

# Split on commas that are not inside braces.
sub split_top {
    my ($s) = @_;
    my @parts;
    my ($depth, $cur) = (0, '');
    for my $c (split //, $s) {
        if    ($c eq '{') { $depth++ }
        elsif ($c eq '}') { $depth-- }
        if ($c eq ',' && $depth == 0) { push @parts, $cur; $cur = ''; next }
        $cur .= $c;
    }
    push @parts, $cur;
    return grep { /\S/ } @parts;
}

# Expand a use tree ("std::{fs, io::Read}") into full paths.
sub expand_use {
    my ($tree) = @_;
    my @paths;
    for my $item (split_top($tree)) {
        $item =~ s/^\s+|\s+$//g;
        if ($item =~ /^(.*?)\s*::\s*\{(.*)\}$/s) {
            my ($prefix, $inner) = ($1, $2);
            for my $sub (expand_use($inner)) {
                push @paths, ($sub eq 'self' ? $prefix : "${prefix}::$sub");
            }
        } elsif ($item =~ /^\{(.*)\}$/s) {
            push @paths, expand_use($1);
        } else {
            $item =~ s/\s+as\s+\w+$//;
            $item =~ s/\s+//g;
            push @paths, $item;
        }
    }
    return @paths;
}

sub line_of { my ($text, $offset) = @_; return 1 + (substr($text, 0, $offset) =~ tr/\n//) }

for my $file (@ARGV) {
    open my $fh, '<', $file or die "check-saml-purity: cannot read $file: $!\n";
    my $src = do { local $/; <$fh> };
    close $fh;
    my $code = strip_rust($src);

    # use statements (possibly grouped, possibly spanning lines)
    while ($code =~ /\buse\s+([^;]*);/g) {
        my ($tree, $start) = ($1, $-[0]);
        for my $path (expand_use($tree)) {
            $path =~ s/^:://;
            if ($path =~ /^($crates)(?:::|$)/) {
                push @findings, [$file, line_of($code, $start), "use of crate $1 ($path)"];
            } elsif ($path =~ /^std::(fs|net)(?:::|$)/) {
                push @findings, [$file, line_of($code, $start), "use of $path"];
            }
        }
    }

    my @lines = split /\n/, $code, -1;
    for my $i (0 .. $#lines) {
        my $l = $lines[$i];
        while ($l =~ /\bextern\s+crate\s+($crates)\b/g) {
            push @findings, [$file, $i + 1, "extern crate $1"];
        }
        while ($l =~ /(?<![\w:])(?:::\s*)?($crates)\s*::/g) {
            push @findings, [$file, $i + 1, "path into crate $1"];
        }
        while ($l =~ /(?<![\w:])(?:::\s*)?std\s*::\s*(fs|net)\b/g) {
            push @findings, [$file, $i + 1, "std::$1"];
        }
        while ($l =~ /\b(Utc|Local|SystemTime)\s*::\s*now\b/g) {
            push @findings, [$file, $i + 1, "clock read $1::now (pass the time in)"];
        }
    }
}

exit 0 unless @findings;

# One line per FILE:LINE, all reasons joined, with the original source text.
my (%reasons, %text, @order);
for my $f (@findings) {
    my ($file, $line, $why) = @$f;
    my $key = "$file:$line";
    push @order, $key unless $reasons{$key};
    push @{ $reasons{$key} }, $why unless grep { $_ eq $why } @{ $reasons{$key} || [] };
}
my %cache;
print STDERR "check-saml-purity: FAILED: the SAML core must not do I/O, use an async runtime or read the clock.\n";
print STDERR "Offending lines:\n";
for my $key (@order) {
    my ($file, $line) = $key =~ /^(.*):(\d+)$/;
    $cache{$file} //= do { open my $fh, '<', $file or die; [<$fh>] };
    my $src = $cache{$file}[$line - 1] // '';
    chomp $src;
    $src =~ s/^\s+//;
    printf STDERR "  %s: %s   [%s]\n", $key, $src, join('; ', @{ $reasons{$key} });
}
printf STDERR "%d offending line(s). Move I/O and clock reads out of src/saml/ and pass their results in.\n",
    scalar @order;
exit 1;
PERL
echo "check-saml-purity: OK (${#files[@]} file(s) under $dir)"
