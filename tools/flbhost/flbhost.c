/*
 * flbhost: loads an output plugin .so the way Fluent Bit's Go proxy does
 * (src/flb_plugin_proxy.c and src/proxy/go/go.c in fluent/fluent-bit) and flushes chunk files
 * into it, so that tests, benchmarks and users without Fluent Bit can drive the real plugin.
 *
 *   flbhost [-t threads] [-n repeat] [-r attempts] [-w retry_ms] [-R reloads] [-q]
 *           [-T tag] PLUGIN.so -i -o key=value ... [-i -o key=value ...] -- CHUNK...
 *
 * Each -i starts an output instance; -o adds a property to the latest one. Every chunk is
 * flushed into every instance (as two outputs matching one tag), -n times, by -t threads at
 * once, re-flushing a chunk while the plugin answers RETRY up to -r attempts, as the
 * engine's scheduler would. A chunk's tag is read from the .tag file beside it, else -T.
 * It prints every answer, then the totals and the process's CPU time and peak memory.
 * Exit status: 0 if every flush ended in OK, 1 otherwise, 2 if the plugin failed to load
 * or initialise.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Fluent Bit's return codes and the structures it shares with Go plugins, as declared in
 * fluent-bit-go's output/flb_plugin.h and output/flb_output.h. */
#define FLB_ERROR 0
#define FLB_OK 1
#define FLB_RETRY 2
#define FLB_PROXY_OUTPUT_PLUGIN 2
#define FLB_PROXY_GOLANG 11

struct flb_plugin_proxy_def {
    int type;
    int proxy;
    int flags;
    char *name;
    char *description;
};

struct flb_api {
    char *(*output_get_property)(char *, void *);
    void *unused[8];
};

struct flb_plugin_proxy_context {
    void *remote_context;
};

struct flbgo_output_plugin {
    void *name;
    struct flb_api *api;
    void *o_ins;
    struct flb_plugin_proxy_context *context;
};

#define MAX_PROPS 64
#define MAX_INSTANCES 32

struct instance {
    int nprops;
    char *keys[MAX_PROPS];
    char *values[MAX_PROPS];
    struct flb_plugin_proxy_context ctx;
    atomic_long ok, retry, error, records_ok, records_dropped, flushes;
};

struct chunk {
    const char *path;
    char *tag;
    unsigned char *data;
    size_t size;
    long records;
};

static int (*cb_register)(struct flb_plugin_proxy_def *);
static int (*cb_init)(void *);
static int (*cb_flush_ctx)(void *, const void *, int, char *);
static int (*cb_exit_ctx)(void *);
static int (*cb_exit)(void);
static void (*cb_pre_exit)(int);
static void (*cb_unregister)(struct flb_plugin_proxy_def *);

static struct instance instances[MAX_INSTANCES];
static int ninstances;
static struct chunk *chunks;
static int nchunks;
static int repeat = 1, attempts = 1, retry_ms = 10, quiet;
static atomic_long next_item;
static pthread_mutex_t print_mu = PTHREAD_MUTEX_INITIALIZER;

/* output_get_property: Fluent Bit matches keys case-insensitively. */
static char *get_property(char *key, void *o_ins)
{
    struct instance *in = o_ins;
    for (int i = 0; i < in->nprops; i++) {
        if (strcasecmp(in->keys[i], key) == 0) {
            return in->values[i];
        }
    }
    return NULL;
}

/* Size of the msgpack object at p, or 0 if it runs past end or is invalid. */
static size_t mp_len(const unsigned char *p, size_t n)
{
    size_t i = 0, pending = 1;
    while (pending > 0) {
        if (i >= n) return 0;
        unsigned c = p[i];
        size_t len = 0, hdr = 1, items = 0;
        pending--;
        if (c <= 0x7f || c >= 0xe0) hdr = 1;
        else if (c <= 0x8f) items = 2 * (c & 0x0f);
        else if (c <= 0x9f) items = c & 0x0f;
        else if (c <= 0xbf) len = c & 0x1f;
        else {
            switch (c) {
            case 0xc0: case 0xc2: case 0xc3: break;
            case 0xca: hdr = 5; break;
            case 0xcb: hdr = 9; break;
            case 0xcc: case 0xd0: hdr = 2; break;
            case 0xcd: case 0xd1: hdr = 3; break;
            case 0xce: case 0xd2: hdr = 5; break;
            case 0xcf: case 0xd3: hdr = 9; break;
            case 0xd4: hdr = 3; break;
            case 0xd5: hdr = 4; break;
            case 0xd6: hdr = 6; break;
            case 0xd7: hdr = 10; break;
            case 0xd8: hdr = 18; break;
            default: {
                int lb = (c == 0xc4 || c == 0xd9 || c == 0xc7) ? 1
                       : (c == 0xc5 || c == 0xda || c == 0xc8 || c == 0xdc || c == 0xde) ? 2
                       : (c == 0xc6 || c == 0xdb || c == 0xc9 || c == 0xdd || c == 0xdf) ? 4 : 0;
                if (lb == 0 || i + 1 + lb > n) return 0;
                size_t v = 0;
                for (int k = 0; k < lb; k++) v = (v << 8) | p[i + 1 + k];
                hdr = 1 + lb;
                if (c == 0xc7 || c == 0xc8 || c == 0xc9) { hdr++; len = v; }
                else if (c == 0xdc || c == 0xdd) items = v;
                else if (c == 0xde || c == 0xdf) items = 2 * v;
                else len = v;
            }
            }
        }
        i += hdr + len;
        pending += items;
    }
    return i <= n ? i : 0;
}

/* Count the log events of a chunk: every top-level object but group markers, whose header
 * timestamp is -1 or -2. Returns -1 on a chunk that is not valid msgpack. */
static long count_records(const unsigned char *p, size_t n)
{
    long count = 0;
    size_t off = 0;
    while (off < n) {
        size_t len = mp_len(p + off, n - off);
        if (len == 0) return -1;
        const unsigned char *e = p + off;
        int group = len > 3 && e[0] == 0x92 && e[1] == 0x92 &&
                    (e[2] == 0xff || e[2] == 0xfe ||
                     (e[2] == 0xd0 && (e[3] == 0xff || e[3] == 0xfe)));
        if (!group) count++;
        off += len;
    }
    return count;
}

static char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n + 1);
    if (buf && fread(buf, 1, n, f) != (size_t) n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *size = n;
    }
    return buf;
}

static const char *rc_name(int rc)
{
    return rc == FLB_OK ? "OK" : rc == FLB_RETRY ? "RETRY" : rc == FLB_ERROR ? "ERROR" : "INVALID";
}

static void *worker(void *arg)
{
    (void) arg;
    long total = (long) repeat * nchunks * ninstances;
    for (;;) {
        long item = atomic_fetch_add(&next_item, 1);
        if (item >= total) break;
        int inst = item % ninstances;
        int c = (item / ninstances) % nchunks;
        struct instance *in = &instances[inst];
        struct chunk *ch = &chunks[c];
        int rc = FLB_RETRY;
        for (int a = 1; a <= attempts; a++) {
            /* Fluent Bit hands the plugin a tag it may not keep: a fresh copy each call. */
            char *tag = strdup(ch->tag);
            rc = cb_flush_ctx(in->ctx.remote_context, ch->data, (int) ch->size, tag);
            free(tag);
            atomic_fetch_add(&in->flushes, 1);
            if (!quiet) {
                pthread_mutex_lock(&print_mu);
                printf("flush instance=%d chunk=%s attempt=%d rc=%d %s records=%ld\n",
                       inst, ch->path, a, rc, rc_name(rc), ch->records);
                fflush(stdout);
                pthread_mutex_unlock(&print_mu);
            }
            if (rc != FLB_RETRY) break;
            if (a < attempts && retry_ms > 0) {
                struct timespec ts = {retry_ms / 1000, (retry_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
        if (rc == FLB_OK) {
            atomic_fetch_add(&in->ok, 1);
            atomic_fetch_add(&in->records_ok, ch->records);
        } else if (rc == FLB_RETRY) {
            atomic_fetch_add(&in->retry, 1);
        } else {
            atomic_fetch_add(&in->error, 1);
            atomic_fetch_add(&in->records_dropped, ch->records);
        }
    }
    return NULL;
}

static struct flbgo_output_plugin plugin;
static struct flb_api api = {.output_get_property = get_property};
static struct flb_plugin_proxy_def def;

static int start(void)
{
    memset(&def, 0, sizeof(def));
    if (cb_register(&def) != 0 || def.type != FLB_PROXY_OUTPUT_PLUGIN ||
        def.proxy != FLB_PROXY_GOLANG || !def.name) {
        fprintf(stderr, "flbhost: FLBPluginRegister did not register a Go output plugin\n");
        return -1;
    }
    printf("registered plugin=%s\n", def.name);
    for (int i = 0; i < ninstances; i++) {
        /* As proxy_go_output_init: one plugin struct, pointed at each instance in turn. */
        instances[i].ctx.remote_context = NULL;
        plugin.api = &api;
        plugin.o_ins = &instances[i];
        plugin.context = &instances[i].ctx;
        int rc = cb_init(&plugin);
        printf("init instance=%d rc=%d\n", i, rc);
        if (rc <= 0) return -1;
    }
    return 0;
}

static void stop(int reloading)
{
    for (int i = 0; i < ninstances; i++) {
        if (cb_pre_exit) cb_pre_exit(reloading);
        int rc = cb_exit_ctx ? cb_exit_ctx(instances[i].ctx.remote_context) : cb_exit();
        printf("exit instance=%d rc=%d\n", i, rc);
    }
    if (cb_unregister) cb_unregister(&def);
}

static double tv_us(struct timeval tv) { return tv.tv_sec * 1e6 + tv.tv_usec; }

static int run_flushes(int threads)
{
    pthread_t tids[64];
    atomic_store(&next_item, 0);
    for (int t = 0; t < threads; t++) pthread_create(&tids[t], NULL, worker, NULL);
    for (int t = 0; t < threads; t++) pthread_join(tids[t], NULL);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 1, reloads = 0, opt;
    const char *default_tag = "flbhost";
    while ((opt = getopt(argc, argv, "+t:n:r:w:R:qT:")) != -1) {
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'n': repeat = atoi(optarg); break;
        case 'r': attempts = atoi(optarg); break;
        case 'w': retry_ms = atoi(optarg); break;
        case 'R': reloads = atoi(optarg); break;
        case 'q': quiet = 1; break;
        case 'T': default_tag = optarg; break;
        default: return 2;
        }
    }
    if (optind >= argc || threads < 1 || threads > 64 || repeat < 0 || attempts < 1) {
        fprintf(stderr, "usage: flbhost [-t threads] [-n repeat] [-r attempts] [-w retry_ms] "
                        "[-R reloads] [-q] [-T tag] PLUGIN.so -i -o key=value ... -- CHUNK...\n");
        return 2;
    }
    const char *so = argv[optind++];
    for (; optind < argc; optind++) {
        char *a = argv[optind];
        if (strcmp(a, "--") == 0) {
            optind++;
            break;
        } else if (strcmp(a, "-i") == 0) {
            if (ninstances == MAX_INSTANCES) return 2;
            ninstances++;
        } else if (strcmp(a, "-o") == 0 && optind + 1 < argc && ninstances > 0) {
            struct instance *in = &instances[ninstances - 1];
            char *kv = argv[++optind], *eq = strchr(kv, '=');
            if (!eq || in->nprops == MAX_PROPS) return 2;
            in->keys[in->nprops] = strndup(kv, eq - kv);
            in->values[in->nprops++] = eq + 1;
        } else {
            fprintf(stderr, "flbhost: unexpected argument %s\n", a);
            return 2;
        }
    }
    nchunks = argc - optind;
    chunks = calloc(nchunks > 0 ? nchunks : 1, sizeof(*chunks));
    long total_records = 0;
    for (int i = 0; i < nchunks; i++) {
        struct chunk *c = &chunks[i];
        c->path = argv[optind + i];
        c->data = (unsigned char *) read_file(c->path, &c->size);
        if (!c->data) {
            fprintf(stderr, "flbhost: cannot read %s: %s\n", c->path, strerror(errno));
            return 2;
        }
        char tagpath[4096];
        snprintf(tagpath, sizeof(tagpath), "%s", c->path);
        char *dot = strrchr(tagpath, '.');
        size_t tsize;
        if (dot && strcmp(dot, ".msgpack") == 0) {
            strcpy(dot, ".tag");
            c->tag = read_file(tagpath, &tsize);
        }
        if (!c->tag) c->tag = strdup(default_tag);
        c->records = count_records(c->data, c->size);
        printf("chunk %s bytes=%zu records=%ld tag=%s\n", c->path, c->size, c->records, c->tag);
        total_records += c->records > 0 ? c->records : 0;
    }

    void *h = dlopen(so, RTLD_LAZY);
    if (!h) {
        fprintf(stderr, "flbhost: dlopen: %s\n", dlerror());
        return 2;
    }
    cb_register = dlsym(h, "FLBPluginRegister");
    cb_init = dlsym(h, "FLBPluginInit");
    cb_flush_ctx = dlsym(h, "FLBPluginFlushCtx");
    cb_exit_ctx = dlsym(h, "FLBPluginExitCtx");
    cb_exit = dlsym(h, "FLBPluginExit");
    cb_pre_exit = dlsym(h, "FLBPluginOutputPreExit");
    cb_unregister = dlsym(h, "FLBPluginUnregister");
    if (!cb_register || !cb_init || !cb_flush_ctx || (!cb_exit_ctx && !cb_exit)) {
        fprintf(stderr, "flbhost: %s lacks the Go output plugin entry points\n", so);
        return 2;
    }

    struct rusage r0, r1;
    struct timeval w0, w1;
    for (int round = 0; round <= reloads; round++) {
        if (start() != 0) {
            stop(0);
            return 2;
        }
        if (round == 0) {
            getrusage(RUSAGE_SELF, &r0);
            gettimeofday(&w0, NULL);
        }
        run_flushes(threads);
        if (round == reloads) {
            getrusage(RUSAGE_SELF, &r1);
            gettimeofday(&w1, NULL);
        }
        stop(round < reloads);
    }

    int failed = 0;
    long records_ok = 0;
    for (int i = 0; i < ninstances; i++) {
        struct instance *in = &instances[i];
        printf("instance %d: flushes=%ld ok=%ld retry=%ld error=%ld records_ok=%ld records_dropped=%ld\n",
               i, atomic_load(&in->flushes), atomic_load(&in->ok), atomic_load(&in->retry),
               atomic_load(&in->error), atomic_load(&in->records_ok),
               atomic_load(&in->records_dropped));
        failed |= atomic_load(&in->retry) > 0 || atomic_load(&in->error) > 0;
        records_ok += atomic_load(&in->records_ok);
    }
    double cpu = tv_us(r1.ru_utime) - tv_us(r0.ru_utime) + tv_us(r1.ru_stime) - tv_us(r0.ru_stime);
    double wall = tv_us(w1) - tv_us(w0);
    long delivered_total = (long) (reloads + 1) * repeat * total_records * ninstances;
    printf("total records_offered=%ld records_ok=%ld\n", delivered_total, records_ok);
    printf("flush phase: wall_us=%.0f cpu_us=%.0f cpu_us_per_record=%.3f records_per_s=%.0f maxrss_kb=%ld\n",
           wall, cpu, delivered_total ? cpu / delivered_total : 0,
           wall > 0 ? delivered_total / (wall / 1e6) : 0, r1.ru_maxrss);
    return failed ? 1 : 0;
}
