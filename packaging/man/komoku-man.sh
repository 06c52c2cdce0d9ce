#!/bin/sh
# Writes the komoku(1) manual page (roff) to OUT, generated from
# what the binary itself says: `komoku --help` and each command's --help for
# the commands and options, `komoku config-docs` for the configuration
# reference. So the page cannot drift from the program it ships with.
#
#   komoku-man.sh -o OUT VERSION DATE KOMOKU [ARG...]
#
# KOMOKU [ARG...] runs the binary: the built komoku, or an emulator and the
# binary in a cross build (qemu-aarch64-static -L SYSROOT build/.../komoku).
# DATE is the page's date (YYYY-MM-DD), fixed by the caller so that two
# builds of the same tree give the same page.
set -eu

if [ $# -lt 5 ] || [ "$1" != -o ]; then
  echo "usage: $0 -o OUT VERSION DATE KOMOKU [ARG...]" >&2
  exit 2
fi
out=$2 version=$3 date=$4
shift 4

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Escapes text for roff: backslashes, and a line that starts with a control
# character. Shared by both converters below.
escape_awk='
function esc(s) {
  gsub(/\\/, "\\e", s)
  if (s ~ /^[.'"'"']/) s = "\\&" s
  return s
}
function inline(s,   out, n) {
  s = esc(s)
  # `code` and **strong** in bold.
  while (match(s, /`[^`]*`/)) {
    s = substr(s, 1, RSTART - 1) "\\fB" substr(s, RSTART + 1, RLENGTH - 2) "\\fR" \
        substr(s, RSTART + RLENGTH)
  }
  while (match(s, /\*\*[^*]+\*\*/)) {
    s = substr(s, 1, RSTART - 1) "\\fB" substr(s, RSTART + 2, RLENGTH - 4) "\\fR" \
        substr(s, RSTART + RLENGTH)
  }
  # *emphasis* (words only: a lone "*" is a glob) in italics.
  while (match(s, /\*[A-Za-z][A-Za-z ]*\*/)) {
    s = substr(s, 1, RSTART - 1) "\\fI" substr(s, RSTART + 1, RLENGTH - 2) "\\fR" \
        substr(s, RSTART + RLENGTH)
  }
  # [text](target) as text (target).
  while (match(s, /\[[^]]*\]\([^)]*\)/)) {
    n = index(substr(s, RSTART), "](")
    s = substr(s, 1, RSTART - 1) substr(s, RSTART + 1, n - 2) " (" \
        substr(s, RSTART + n + 1, RLENGTH - n - 2) ")" substr(s, RSTART + RLENGTH)
  }
  return s
}
'

# One CLI11 help text (Usage:, Positionals:, Options:, Subcommands:) as roff:
# the usage line, then each positional and option as a tagged paragraph. The
# -h,--help line every command has is left out (said once, under OPTIONS).
help_to_roff() {
  awk "$escape_awk"'
    function flush() {
      if (name == "") return
      if (name !~ /^-h,--help/) {
        tag = esc(name)
        gsub(/-/, "\\-", tag)
        print ".TP"
        print "\\fB" tag "\\fR"
        print inline(desc)
      }
      name = ""; desc = ""
    }
    NR == 1 { next }                      # the description, printed by the caller
    /^Usage: / {
      sub(/^Usage: [^ ]*komoku/, "komoku")
      usage = esc($0)
      gsub(/-/, "\\-", usage)
      print ".PP"
      print "\\fB" usage "\\fR"
      next
    }
    /^(Positionals|Options|Subcommands):$/ { flush(); section = $0; next }
    /^$/ { flush(); next }
    section == "Subcommands:" { next }    # each has a section of its own
    /^  [^ ]/ {
      flush()
      line = substr($0, 3)
      if (match(line, /  +/)) {
        name = substr(line, 1, RSTART - 1)
        desc = substr(line, RSTART + RLENGTH)
      } else {
        name = line
      }
      next
    }
    /^   +[^ ]/ { sub(/^ +/, ""); desc = (desc == "" ? $0 : desc " " $0); next }
    END { flush() }
  '
}

# The subcommand names and descriptions of a help text, one per line:
# NAME<TAB>DESCRIPTION.
subcommands() {
  awk '
    /^Subcommands:$/ { on = 1; next }
    on && /^  [^ ]/ {
      line = substr($0, 3)
      match(line, /  +/)
      print substr(line, 1, RSTART - 1) "\t" substr(line, RSTART + RLENGTH)
      next
    }
    on && /^$/ { on = 0 }
  '
}

# The configuration reference (Markdown) as roff: paragraphs, "##" headings as
# subsections, tables as tagged paragraphs (first cell the tag, the middle
# cells "header: value", the last the text) and fenced blocks as literal text.
config_to_roff() {
  awk "$escape_awk"'
    function cells(line, arr,   n, i) {
      sub(/^\| */, "", line); sub(/ *\| *$/, "", line)
      n = split(line, arr, / *\| */)
      return n
    }
    /^# / { next }                        # the title: the caller has a section
    /^```/ {
      if (!fence) { print ".PP"; print ".RS 4"; print ".nf" } else { print ".fi"; print ".RE" }
      fence = !fence
      next
    }
    fence { print ($0 == "" ? "" : esc($0)); next }
    /^## / { print ".SS " inline(substr($0, 4)); para = 0; next }
    /^\| *---/ { next }
    /^\|/ {
      if (!intable) { intable = 1; ncol = cells($0, head); next }
      n = cells($0, row)
      print ".TP"
      print inline(row[1])
      meta = ""
      for (i = 2; i < n; i++) {
        if (row[i] == "") continue
        meta = meta (meta == "" ? "" : "; ") (head[i] == "" ? "" : head[i] ": ") row[i]
      }
      if (meta != "") { print inline(meta); print ".br" }
      print inline(row[n])
      next
    }
    { intable = 0 }
    /^$/ { para = 0; next }
    {
      if (!para) { print ".PP"; para = 1 }
      print inline($0)
    }
  '
}

exec > "$tmp/page"
"$@" --help > "$tmp/help"
"$@" config-docs > "$tmp/config.md"
summary=$(head -n 1 "$tmp/help" | sed 's/^Komoku: //')

cat <<EOF
.\" Generated by packaging/man/komoku-man.sh from komoku --help and
.\" komoku config-docs; edit those, not this file.
.TH KOMOKU 1 "$date" "komoku $version" "User Commands"
.SH NAME
komoku \\- $summary
.SH SYNOPSIS
.B komoku
.I command
.RI [ options ]
.br
.B komoku \\-\\-help
.br
.B komoku \\-\\-version
.SH DESCRIPTION
Komoku is a key\\-value store with history for a home, built as an MQTT bridge
service.
Sensors publish to an MQTT broker; Komoku maps their topics to typed keys
(numeric, counter, boolean, uptime, string), records every change in a SQLite
hot store, compacts older history into immutable segment files with rollups,
publishes state back to MQTT, and answers history over HTTP, with a web page
of charts at / on the HTTP address (by default http://127.0.0.1:8080/).
.PP
The service is
.BR "komoku run" ,
normally started by systemd from
.I komoku.service
with
.IR /etc/komoku/komoku.yaml .
The other commands check a configuration, print its reference, and work on
a data directory: compaction, segments, backup and restore, import and export.
.SH OPTIONS
.TP
.BR \\-h ", " \\-\\-help
Print the help of komoku, or of the command it follows, and exit.
.TP
.B \\-\\-version
Print the version and exit.
.SH COMMANDS
EOF

subcommands < "$tmp/help" > "$tmp/commands"
while IFS="$(printf '\t')" read -r name desc; do
  "$@" "$name" --help > "$tmp/sub"
  printf '.SS %s\n' "$name"
  printf '%s\n' "$desc" | awk "$escape_awk"'{ print inline($0) }'
  help_to_roff < "$tmp/sub"
  subcommands < "$tmp/sub" > "$tmp/subsub"
  while IFS="$(printf '\t')" read -r sub subdesc; do
    "$@" "$name" "$sub" --help > "$tmp/subsub-help"
    printf '.TP\n\\fB%s %s\\fR\n' "$name" "$sub"
    printf '%s\n' "$subdesc" | awk "$escape_awk"'{ print inline($0) }'
    echo ".RS"
    help_to_roff < "$tmp/subsub-help"
    echo ".RE"
  done < "$tmp/subsub"
done < "$tmp/commands"

echo ".SH CONFIGURATION"
config_to_roff < "$tmp/config.md"

cat <<'EOF'
.SH FILES
.TP
.I /etc/komoku/komoku.yaml
The configuration the service reads (a conffile: kept on upgrade).
.TP
.I /var/lib/komoku
The data directory of the packaged service (systemd's StateDirectory; with
DynamicUser, the files live in /var/lib/private/komoku).
.TP
.I /usr/lib/systemd/system/komoku.service
The systemd unit; nothing is enabled at install:
.B systemctl enable \-\-now komoku
starts it.
.TP
.I /usr/share/doc/komoku/
The README and the full documentation (docs/), and the example
configuration.
.SH EXIT STATUS
0 on success; 1 when a command failed (a damaged segment, a refused import
row, an I/O error); 2 for a usage or configuration error, which a restart
does not fix (the unit does not restart the service on it).
.SH SEE ALSO
.BR mosquitto (8),
.BR mosquitto_pub (1),
.BR systemctl (1),
.BR journalctl (1);
/usr/share/doc/komoku/docs/operations.md and
/usr/share/doc/komoku/docs/http\-api.md.
EOF

mv "$tmp/page" "$out"
