// Package e2e holds cairn's end-to-end tests. They build the cairn binary
// once (TestMain) and run it as a separate process against real image files,
// made with Go and with real qemu-img/qemu-io, and check the results with
// qemu-img as an independent judge.
//
// The tests need qemu-img (Debian package qemu-utils). Without it they skip,
// unless CI=true or CAIRN_REQUIRE_TOOLS=1 is set: then they fail. qemu-io is
// used when present (a backing chain's overlay is otherwise made with
// `qemu-img convert -B`).
//
// Randomised choices (kill moments, changed offsets) derive from one seed
// that each test logs; set CAIRN_E2E_SEED to replay a run. Set CAIRN_E2E_BIN
// to test a prebuilt cairn binary instead of building one.
//
//	go test ./test/e2e/ -count=1
package e2e
