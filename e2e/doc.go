// Package e2e holds the tests that drive the real out_trailstack.so through the C host
// (tools/flbhost/flbhost.c), which loads it with dlopen as Fluent Bit's Go proxy does, and through a
// real fluent-bit when FLUENT_BIT_BIN names one. A Go test binary cannot load the .so
// itself: two Go runtimes in one process are unsupported.
package e2e
