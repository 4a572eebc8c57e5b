#!/usr/bin/env bash
# The whole test suite of the focus. It installs what a fresh machine
# lacks (Debian's Chromium, for the browser tests), then runs:
#   1. gofmt and go vet;
#   2. every test with -race, except the media delivery tests; then, with
#      -tags goolm, the tests that play an encrypting client with mautrix's
#      OlmMachine (the focus itself needs no tag);
#   3. the media delivery tests (e2e, TestDelivery*) without -race;
#   4. the forwarding benchmark, which must report 0 allocs/op;
#   5. under CI=true (or FOCUS_FUZZ=1), a rotating subset of the fuzz targets.
# Under CI=true a test whose dependency is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n=== %s\n' "$*"; }

if [ ! -x "${FOCUS_CHROMIUM:-/usr/bin/chromium}" ]; then
	step "installing chromium (apt-get)"
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

step "gofmt and go vet"
unformatted=$(gofmt -l $(find . -name '*.go' -not -path './node_modules/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go vet -tags goolm ./matrix/ ./internal/matrixclient/ ./e2e/

# Build Dendrite (the homeserver of the Matrix tests) into the cache now,
# once, so that its cold build (a minute or two) does not run inside the
# race-checked tests below. Nothing is done when it is cached already.
step "Dendrite for the Matrix tests (docs/testing.md)"
go test -count=1 -timeout 20m -v -run '^TestBuild$' ./internal/dendrite/

step "tests (-race)"
go test -race -count=1 -skip '^TestDelivery' ./...

step "Olm against mautrix's OlmMachine (-race -tags goolm)"
go test -race -count=1 -tags goolm -run 'Crypto' ./matrix/
go test -race -count=1 -tags goolm -run '^TestMatrixEncrypted|^TestOlm$' ./e2e/ ./internal/matrixclient/

step "delivery tests (no -race)"
go test -count=1 -run '^TestDelivery' ./e2e/

step "forwarding benchmark"
bench=$(go test -run '^$' -bench 'Forward' -benchmem -benchtime 20000x ./focus/)
echo "$bench"
if echo "$bench" | grep -E '^Benchmark' | grep -vqE ' 0 allocs/op'; then
	echo "the forwarding path allocates"; exit 1
fi
# The same path through a real pion connection, for pion's own share
# (SRTP, interceptors, the send); reported, not asserted.
go test -run '^$' -bench 'ForwardThroughPion' -benchmem -benchtime 5000x ./rtc/ | grep -E '^(Benchmark|ok)'

if [ "${CI:-}" = "true" ] || [ "${FOCUS_FUZZ:-}" = "1" ]; then
	# Six targets a run, chosen by the day so every target gets its turn
	# over a week of runs. The budget is a count of executions, not a
	# duration: a -fuzztime duration races Go's fuzzing coordinator at its
	# deadline and can fail a run that found nothing ("context deadline
	# exceeded", seen on a loaded 2-core runner).
	step "fuzzing a rotating subset"
	mapfile -t targets < <(grep -rhoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed 's/func //' | sort -u)
	mapfile -t files < <(for t in "${targets[@]}"; do grep -rlE --include='*_test.go' "^func $t\(" . | head -1; done)
	n=${#targets[@]}
	start=$(( $(date +%j | sed 's/^0*//') % n ))
	for i in 0 1 2 3 4 5; do
		[ "$i" -ge "$n" ] && break
		k=$(( (start + i) % n ))
		pkg=$(dirname "${files[$k]}")
		echo "fuzz ${targets[$k]} in $pkg"
		go test -run '^$' -fuzz "^${targets[$k]}\$" -fuzztime 60000x "$pkg"
	done
fi

step "all tests passed"
