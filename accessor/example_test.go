package accessor_test

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/accessor"
	"github.com/trailstack/trailstack/record"
)

// Templates register the fields they read with one Extractor, which then finds all of them
// in one pass over each record; a template renders from the values found. "||" gives a
// fallback for when a field is missing.
func ExampleTemplate() {
	ex := accessor.NewExtractor()
	env := func(string) (string, bool) { return "", false }
	appName, _ := accessor.Compile("$kubernetes['namespace_name']/$kubernetes['container_name']", ex, env)
	msgID, _ := accessor.Compile("$level||$stream", ex, env)

	body := msgp.AppendMapHeader(nil, 3)
	body = msgp.AppendString(body, "stream")
	body = msgp.AppendString(body, "stderr")
	body = msgp.AppendString(body, "log")
	body = msgp.AppendString(body, "connection refused")
	body = msgp.AppendString(body, "kubernetes")
	body = msgp.AppendMapHeader(body, 3)
	for _, kv := range [][2]string{{"namespace_name", "shop"}, {"pod_name", "cart-5d9b8c7f6-abcde"}, {"container_name", "cart"}} {
		body = msgp.AppendString(body, kv[0])
		body = msgp.AppendString(body, kv[1])
	}

	// The tag names the container: the kubernetes map is trusted only when it agrees.
	tag := "kube.var.log.containers.cart-5d9b8c7f6-abcde_shop_cart-" +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log"
	id := accessor.ParseTag(tag)
	vals := make([]record.Value, ex.Slots())
	ex.Extract(&id, record.Value(body), vals, nil)

	a, _ := appName.Render(nil, vals, tag)
	m, _ := msgID.Render(nil, vals, tag)
	fmt.Println(string(a), string(m))
	// Output: shop/cart stderr
}
