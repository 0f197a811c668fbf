# Sourced by the data preparation scripts (data/*/prepare.sh): fetch URL FILE downloads to FILE.part,
# then renames it, so an interrupted download is never taken for a file.
fetch() {
  echo "fetch $1"
  if command -v curl > /dev/null; then curl -fL --retry 3 -o "$2.part" "$1"
  elif command -v wget > /dev/null; then wget -q -O "$2.part" "$1"
  else echo "prepare.sh: neither curl nor wget is installed" >&2; exit 1; fi
  mv "$2.part" "$2"
}
