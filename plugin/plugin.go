// Command plugin is out_trailstack.so: the functions Fluent Bit's Go proxy looks up in the
// shared object, and nothing else. Everything they do is in package core and the sinks.
package main

/*
#include <stdint.h>

// The head of fluent-bit's struct flbgo_output_plugin (src/proxy/go/go.h) and of
// struct flb_plugin_proxy_context, as fluent-bit-go's flb_output.h declares them.
struct ts_proxy_context { void *remote_context; };
struct ts_output_plugin {
	void *name;
	void *api;
	void *o_ins;
	struct ts_proxy_context *context;
};

// Fluent Bit hands remote_context back to FlushCtx and ExitCtx; ours is the instance's ID in
// core.Registry rather than fluent-bit-go's FLBPluginSetContext, which keeps every context
// in a global map forever and so would keep old instances alive across hot reloads.
static void ts_set_context(void *plugin, uintptr_t id) {
	((struct ts_output_plugin *)plugin)->context->remote_context = (void *)id;
}
*/
import "C"

import (
	"os"
	"slices"
	"unsafe"

	"github.com/fluent/fluent-bit-go/output"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/sinks"
)

// registry is the plugin's one piece of state: Fluent Bit gives the plugin no other place
// to keep its instances. testKinds is empty but in the tests' build.
var registry = core.Registry{Kinds: slices.Concat(sinks.All, testKinds)}

// configKey reads an instance's keys through Fluent Bit's output_get_property.
type configKey struct{ plugin unsafe.Pointer }

func (c configKey) Get(key string) string { return output.FLBPluginConfigKey(c.plugin, key) }

func answer(st core.Status) int {
	switch st {
	case core.Delivered:
		return output.FLB_OK
	case core.Failed:
		return output.FLB_ERROR
	}
	return output.FLB_RETRY
}

// recoverTo turns a panic in glue code into ret, so that none crosses into C.
func recoverTo(ret *int, value int, where string) {
	if r := recover(); r != nil {
		core.NewLogger("plugin", os.Stderr).Errorf("panic in %s: %v", where, r)
		*ret = value
	}
}

//export FLBPluginRegister
func FLBPluginRegister(def unsafe.Pointer) (ret int) {
	defer recoverTo(&ret, -1, "FLBPluginRegister")
	return output.FLBPluginRegister(def, "trailstack", "Papertrail (syslog) and Cloud Logging, acknowledged before OK")
}

//export FLBPluginInit
func FLBPluginInit(plugin unsafe.Pointer) (ret int) {
	defer recoverTo(&ret, output.FLB_ERROR, "FLBPluginInit")
	id, _, err := registry.New(configKey{plugin})
	if err != nil {
		return output.FLB_ERROR
	}
	C.ts_set_context(plugin, C.uintptr_t(id))
	return output.FLB_OK
}

// The context is an integer in a void*: Go takes it as uintptr_t (the same register in the
// C calling convention), never as an unsafe.Pointer, which must hold a real address.
//
//export FLBPluginFlushCtx
func FLBPluginFlushCtx(ctx C.uintptr_t, data unsafe.Pointer, length C.int, tag *C.char) (ret int) {
	defer recoverTo(&ret, output.FLB_RETRY, "FLBPluginFlushCtx")
	in := registry.Get(uintptr(ctx))
	if in == nil {
		core.NewLogger("plugin", os.Stderr).Errorf("flush for an unknown or exited instance; chunk kept for retry")
		return output.FLB_RETRY
	}
	// The chunk stays where Fluent Bit put it; records point into it only during this call.
	var chunk []byte
	if data != nil && length > 0 {
		chunk = unsafe.Slice((*byte)(data), int(length))
	}
	return answer(in.Flush(chunk, C.GoString(tag)))
}

//export FLBPluginExitCtx
func FLBPluginExitCtx(ctx C.uintptr_t) (ret int) {
	defer recoverTo(&ret, output.FLB_ERROR, "FLBPluginExitCtx")
	if in := registry.Remove(uintptr(ctx)); in != nil {
		in.Close()
	}
	return output.FLB_OK
}

//export FLBPluginExit
func FLBPluginExit() (ret int) {
	defer recoverTo(&ret, output.FLB_ERROR, "FLBPluginExit")
	for _, in := range registry.RemoveAll() {
		in.Close()
	}
	return output.FLB_OK
}

//export FLBPluginUnregister
func FLBPluginUnregister(def unsafe.Pointer) {
	defer recoverTo(new(int), 0, "FLBPluginUnregister")
	output.FLBPluginUnregister(def)
}

func main() {}
