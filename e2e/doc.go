// Package e2e holds the tests from outside: the real out_trailstack.so driven through the C
// host (tools/flbhost), which loads it with dlopen as Fluent Bit's Go proxy does, to the test
// destination and to rsyslog, and the real fluent-bit (../shared/engine beside the
// repository, or FLUENT_BIT_BIN) running it. A Go test binary cannot load the .so itself:
// two Go runtimes in one process are unsupported.
package e2e
