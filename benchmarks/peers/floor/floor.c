/*
 * wasmtime-floor: the least a native proxy-wasm host does for one HTTP
 * lifecycle, on the wasmtime C API of the libwasmtime that the `wasmtime`
 * Python wheel ships (the engine wasmkit itself runs on). It is the floor of
 * benchmarks/bench_peers.py: what the same module costs when the host adds
 * next to nothing.
 *
 *   wasmtime-floor SPEC
 *
 * SPEC and the commands on stdin (run N, show, fresh, quit) are those of
 * benchmarks/peers/proxytest/main.go. One lifecycle: proxy_on_context_create,
 * proxy_on_request_headers and proxy_on_response_headers (end of stream),
 * proxy_on_log, proxy_on_done, proxy_on_delete, as wasmkit calls them.
 *
 * Host functions: proxy_log (kept per stream), proxy_get_header_map_value,
 * proxy_add_header_map_value (real per-stream header maps, copied in from the
 * SPEC's headers at each lifecycle, as a proxy receives them), the plugin
 * configuration through proxy_get_buffer_bytes and
 * proxy_set_effective_context; WASI is wasmtime's own. Any other import traps
 * when called (linked by wasmtime_linker_define_unknown_imports_as_traps).
 * Guest pointers are bounds-checked against the memory's current size.
 *
 * Built by scripts/build-peers.sh with headers from the wasmtime-c-api-impl
 * crate of the same version as the wheel.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <wasi.h>
#include <wasmtime.h>

enum { OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2, INVALID_MEMORY_ACCESS = 6 };
enum { MAP_REQUEST_HEADERS = 0, MAP_RESPONSE_HEADERS = 2 };
enum { BUFFER_VM_CONFIGURATION = 6, BUFFER_PLUGIN_CONFIGURATION = 7 };
enum { ROOT_ID = 1 };

typedef struct {
  char *data;
  uint32_t size;
} bytes_t;

typedef struct {
  bytes_t name, value;
} header_t;

typedef struct {
  header_t *items;
  size_t len, cap;
} header_map_t;

typedef struct {
  int32_t level;
  bytes_t text;
} log_t;

typedef struct {
  log_t *items;
  size_t len, cap;
} log_list_t;

/* One HTTP stream's state, kept for the stream's lifetime. */
typedef struct {
  uint32_t id;
  header_map_t request, response;
  log_list_t logs;
} stream_t;

typedef struct {
  /* the lifecycle */
  header_map_t spec_request, spec_response;
  bytes_t config, wasm;
  /* the VM */
  wasm_engine_t *engine;
  wasmtime_module_t *module;
  wasmtime_store_t *store;
  wasmtime_context_t *context;
  wasmtime_memory_t memory;
  wasmtime_func_t malloc_fn, on_context_create, on_vm_start, on_configure,
      on_request_headers, on_response_headers, on_log, on_done, on_delete;
  /* the stream being run (the floor runs one at a time) */
  stream_t stream;
  uint32_t next_id, effective_id;
} host_t;

static void die(const char *what, wasmtime_error_t *error, wasm_trap_t *trap) {
  fprintf(stderr, "wasmtime-floor: %s", what);
  wasm_byte_vec_t message = {0, NULL};
  if (error != NULL) {
    wasmtime_error_message(error, &message);
    wasmtime_error_delete(error);
  } else if (trap != NULL) {
    wasm_trap_message(trap, &message);
    wasm_trap_delete(trap);
  }
  if (message.size > 0) fprintf(stderr, ": %.*s", (int)message.size, message.data);
  fputc('\n', stderr);
  exit(1);
}

static void *checked(void *p) {
  if (p == NULL) {
    fputs("wasmtime-floor: out of memory\n", stderr);
    exit(1);
  }
  return p;
}

static bytes_t copy_bytes(const void *data, size_t size) {
  bytes_t b = {checked(malloc(size ? size : 1)), (uint32_t)size};
  memcpy(b.data, data, size);
  return b;
}

static void map_add(header_map_t *map, const char *name, size_t name_len,
                    const char *value, size_t value_len) {
  if (map->len == map->cap) {
    map->cap = map->cap ? map->cap * 2 : 16;
    map->items = checked(realloc(map->items, map->cap * sizeof(header_t)));
  }
  header_t *h = &map->items[map->len++];
  h->name = copy_bytes(name, name_len);
  for (size_t i = 0; i < name_len; i++) /* header names are lower case */
    if (h->name.data[i] >= 'A' && h->name.data[i] <= 'Z') h->name.data[i] += 'a' - 'A';
  h->value = copy_bytes(value, value_len);
}

static void map_clear(header_map_t *map) {
  for (size_t i = 0; i < map->len; i++) {
    free(map->items[i].name.data);
    free(map->items[i].value.data);
  }
  map->len = 0;
}

static void map_copy(header_map_t *to, const header_map_t *from) {
  for (size_t i = 0; i < from->len; i++)
    map_add(to, from->items[i].name.data, from->items[i].name.size,
            from->items[i].value.data, from->items[i].value.size);
}

static header_map_t *stream_map(host_t *host, int32_t type) {
  if (host->effective_id != host->stream.id || host->stream.id == 0) return NULL;
  if (type == MAP_REQUEST_HEADERS) return &host->stream.request;
  if (type == MAP_RESPONSE_HEADERS) return &host->stream.response;
  return NULL;
}

/* The guest's memory, or NULL when [ptr, ptr + len) is outside it. */
static uint8_t *guest(wasmtime_context_t *context, host_t *host, uint32_t ptr,
                      uint32_t len) {
  size_t size = wasmtime_memory_data_size(context, &host->memory);
  if ((uint64_t)ptr + len > size) return NULL;
  return wasmtime_memory_data(context, &host->memory) + ptr;
}

static void call(wasmtime_context_t *context, const wasmtime_func_t *fn,
                 wasmtime_val_raw_t *values, size_t count, const char *what) {
  wasm_trap_t *trap = NULL;
  wasmtime_error_t *error = wasmtime_func_call_unchecked(context, fn, values, count, &trap);
  if (error != NULL || trap != NULL) die(what, error, trap);
}

/* Copies data into a guest allocation and writes its pointer and size. */
static int32_t copy_out(wasmtime_context_t *context, host_t *host, const bytes_t *data,
                        uint32_t ptr_ptr, uint32_t size_ptr) {
  if (guest(context, host, ptr_ptr, 4) == NULL || guest(context, host, size_ptr, 4) == NULL)
    return INVALID_MEMORY_ACCESS;
  wasmtime_val_raw_t v[1];
  v[0].i32 = (int32_t)data->size;
  call(context, &host->malloc_fn, v, 1, "proxy_on_memory_allocate");
  uint32_t at = (uint32_t)v[0].i32;
  uint8_t *to = guest(context, host, at, data->size);
  if (to == NULL) return INVALID_MEMORY_ACCESS;
  memcpy(to, data->data, data->size);
  /* the memory may have grown: look the words up again */
  memcpy(guest(context, host, ptr_ptr, 4), &at, 4);
  memcpy(guest(context, host, size_ptr, 4), &data->size, 4);
  return OK;
}

static wasm_trap_t *proxy_log(void *env, wasmtime_caller_t *caller,
                              wasmtime_val_raw_t *args, size_t n) {
  (void)n;
  host_t *host = env;
  wasmtime_context_t *context = wasmtime_caller_context(caller);
  uint32_t ptr = (uint32_t)args[1].i32, len = (uint32_t)args[2].i32;
  uint8_t *msg = guest(context, host, ptr, len);
  if (msg == NULL) {
    args[0].i32 = INVALID_MEMORY_ACCESS;
    return NULL;
  }
  log_list_t *logs = &host->stream.logs;
  if (logs->len == logs->cap) {
    logs->cap = logs->cap ? logs->cap * 2 : 8;
    logs->items = checked(realloc(logs->items, logs->cap * sizeof(log_t)));
  }
  logs->items[logs->len].level = args[0].i32;
  logs->items[logs->len++].text = copy_bytes(msg, len);
  args[0].i32 = OK;
  return NULL;
}

static wasm_trap_t *proxy_get_header_map_value(void *env, wasmtime_caller_t *caller,
                                               wasmtime_val_raw_t *args, size_t n) {
  (void)n;
  host_t *host = env;
  wasmtime_context_t *context = wasmtime_caller_context(caller);
  header_map_t *map = stream_map(host, args[0].i32);
  uint32_t key_len = (uint32_t)args[2].i32;
  uint8_t *key = guest(context, host, (uint32_t)args[1].i32, key_len);
  if (map == NULL) {
    args[0].i32 = BAD_ARGUMENT;
    return NULL;
  }
  if (key == NULL) {
    args[0].i32 = INVALID_MEMORY_ACCESS;
    return NULL;
  }
  for (size_t i = 0; i < map->len; i++) {
    const header_t *h = &map->items[i];
    if (h->name.size == key_len && strncasecmp(h->name.data, (const char *)key, key_len) == 0) {
      args[0].i32 = copy_out(context, host, &h->value, (uint32_t)args[3].i32,
                             (uint32_t)args[4].i32);
      return NULL;
    }
  }
  args[0].i32 = NOT_FOUND;
  return NULL;
}

static wasm_trap_t *proxy_add_header_map_value(void *env, wasmtime_caller_t *caller,
                                               wasmtime_val_raw_t *args, size_t n) {
  (void)n;
  host_t *host = env;
  wasmtime_context_t *context = wasmtime_caller_context(caller);
  header_map_t *map = stream_map(host, args[0].i32);
  uint32_t key_len = (uint32_t)args[2].i32, value_len = (uint32_t)args[4].i32;
  uint8_t *key = guest(context, host, (uint32_t)args[1].i32, key_len);
  uint8_t *value = guest(context, host, (uint32_t)args[3].i32, value_len);
  if (map == NULL) {
    args[0].i32 = BAD_ARGUMENT;
    return NULL;
  }
  if (key == NULL || value == NULL) {
    args[0].i32 = INVALID_MEMORY_ACCESS;
    return NULL;
  }
  map_add(map, (const char *)key, key_len, (const char *)value, value_len);
  args[0].i32 = OK;
  return NULL;
}

static wasm_trap_t *proxy_get_buffer_bytes(void *env, wasmtime_caller_t *caller,
                                           wasmtime_val_raw_t *args, size_t n) {
  (void)n;
  host_t *host = env;
  wasmtime_context_t *context = wasmtime_caller_context(caller);
  int32_t type = args[0].i32;
  uint32_t start = (uint32_t)args[1].i32, max = (uint32_t)args[2].i32;
  if (type != BUFFER_PLUGIN_CONFIGURATION || host->config.size == 0) {
    args[0].i32 = NOT_FOUND;
    return NULL;
  }
  if (start > host->config.size) {
    args[0].i32 = BAD_ARGUMENT;
    return NULL;
  }
  uint32_t len = host->config.size - start;
  if (len > max) len = max;
  bytes_t part = {host->config.data + start, len};
  args[0].i32 = copy_out(context, host, &part, (uint32_t)args[3].i32, (uint32_t)args[4].i32);
  return NULL;
}

static wasm_trap_t *proxy_set_effective_context(void *env, wasmtime_caller_t *caller,
                                                wasmtime_val_raw_t *args, size_t n) {
  (void)caller;
  (void)n;
  host_t *host = env;
  uint32_t id = (uint32_t)args[0].i32;
  if (id != ROOT_ID && id != host->stream.id) {
    args[0].i32 = BAD_ARGUMENT;
    return NULL;
  }
  host->effective_id = id;
  args[0].i32 = OK;
  return NULL;
}

static void define(host_t *host, wasmtime_linker_t *linker, const char *name, size_t params,
                   wasmtime_func_unchecked_callback_t cb) {
  wasm_valtype_t *p[8];
  for (size_t i = 0; i < params; i++) p[i] = wasm_valtype_new(WASM_I32);
  wasm_valtype_t *r[1] = {wasm_valtype_new(WASM_I32)};
  wasm_valtype_vec_t pv, rv;
  wasm_valtype_vec_new(&pv, params, p);
  wasm_valtype_vec_new(&rv, 1, r);
  wasm_functype_t *ty = wasm_functype_new(&pv, &rv);
  wasmtime_error_t *error = wasmtime_linker_define_func_unchecked(
      linker, "env", 3, name, strlen(name), ty, cb, host, NULL);
  wasm_functype_delete(ty);
  if (error != NULL) die(name, error, NULL);
}

static wasmtime_extern_t export(host_t *host, wasmtime_instance_t *instance, const char *name,
                                int required) {
  wasmtime_extern_t item;
  memset(&item, 0, sizeof item);
  if (!wasmtime_instance_export_get(host->context, instance, name, strlen(name), &item)) {
    if (required) {
      fprintf(stderr, "wasmtime-floor: the module exports no %s\n", name);
      exit(1);
    }
    item.kind = 255;
  }
  return item;
}

static wasmtime_func_t export_func(host_t *host, wasmtime_instance_t *instance,
                                   const char *name) {
  wasmtime_extern_t item = export(host, instance, name, 1);
  if (item.kind != WASMTIME_EXTERN_FUNC) {
    fprintf(stderr, "wasmtime-floor: export %s is not a function\n", name);
    exit(1);
  }
  return item.of.func;
}

static void begin_stream(host_t *host) {
  stream_t *s = &host->stream;
  s->id = host->next_id++;
  map_copy(&s->request, &host->spec_request);
  map_copy(&s->response, &host->spec_response);
}

static void end_stream(host_t *host) {
  stream_t *s = &host->stream;
  map_clear(&s->request);
  map_clear(&s->response);
  for (size_t i = 0; i < s->logs.len; i++) free(s->logs.items[i].text.data);
  s->logs.len = 0;
  s->id = 0;
}

/* A new store and instance, the plugin started (root context ROOT_ID). */
static void start(host_t *host) {
  if (host->store != NULL) wasmtime_store_delete(host->store);
  host->store = wasmtime_store_new(host->engine, NULL, NULL);
  host->context = wasmtime_store_context(host->store);
  wasi_config_t *wasi = wasi_config_new();
  wasmtime_error_t *error = wasmtime_context_set_wasi(host->context, wasi);
  if (error != NULL) die("WASI", error, NULL);

  wasmtime_linker_t *linker = wasmtime_linker_new(host->engine);
  error = wasmtime_linker_define_wasi(linker);
  if (error != NULL) die("WASI imports", error, NULL);
  define(host, linker, "proxy_log", 3, proxy_log);
  define(host, linker, "proxy_get_header_map_value", 5, proxy_get_header_map_value);
  define(host, linker, "proxy_add_header_map_value", 5, proxy_add_header_map_value);
  define(host, linker, "proxy_get_buffer_bytes", 5, proxy_get_buffer_bytes);
  define(host, linker, "proxy_set_effective_context", 1, proxy_set_effective_context);
  error = wasmtime_linker_define_unknown_imports_as_traps(linker, host->module);
  if (error != NULL) die("other imports", error, NULL);

  wasmtime_instance_t instance;
  wasm_trap_t *trap = NULL;
  error = wasmtime_linker_instantiate(linker, host->context, host->module, &instance, &trap);
  wasmtime_linker_delete(linker);
  if (error != NULL || trap != NULL) die("instantiate", error, trap);

  wasmtime_extern_t memory = export(host, &instance, "memory", 1);
  if (memory.kind != WASMTIME_EXTERN_MEMORY) die("export memory is not a memory", NULL, NULL);
  host->memory = memory.of.memory;
  host->malloc_fn = export_func(host, &instance, "proxy_on_memory_allocate");
  host->on_context_create = export_func(host, &instance, "proxy_on_context_create");
  host->on_vm_start = export_func(host, &instance, "proxy_on_vm_start");
  host->on_configure = export_func(host, &instance, "proxy_on_configure");
  host->on_request_headers = export_func(host, &instance, "proxy_on_request_headers");
  host->on_response_headers = export_func(host, &instance, "proxy_on_response_headers");
  host->on_log = export_func(host, &instance, "proxy_on_log");
  host->on_done = export_func(host, &instance, "proxy_on_done");
  host->on_delete = export_func(host, &instance, "proxy_on_delete");

  wasmtime_extern_t init = export(host, &instance, "_initialize", 0);
  if (init.kind == WASMTIME_EXTERN_FUNC) call(host->context, &init.of.func, NULL, 0, "_initialize");

  wasmtime_val_raw_t v[2];
  host->effective_id = ROOT_ID;
  v[0].i32 = ROOT_ID;
  v[1].i32 = 0;
  call(host->context, &host->on_context_create, v, 2, "proxy_on_context_create (root)");
  v[0].i32 = ROOT_ID;
  v[1].i32 = 0;
  call(host->context, &host->on_vm_start, v, 2, "proxy_on_vm_start");
  if (v[0].i32 == 0) die("proxy_on_vm_start returned false", NULL, NULL);
  v[0].i32 = ROOT_ID;
  v[1].i32 = (int32_t)host->config.size;
  call(host->context, &host->on_configure, v, 2, "proxy_on_configure");
  if (v[0].i32 == 0) die("proxy_on_configure returned false", NULL, NULL);
  end_stream(host); /* the start-up logs are no stream's */
  host->next_id = ROOT_ID + 1;
}

static void lifecycle(host_t *host) {
  wasmtime_context_t *c = host->context;
  wasmtime_val_raw_t v[3];
  begin_stream(host);
  int32_t id = (int32_t)host->stream.id;
  host->effective_id = host->stream.id;
  v[0].i32 = id;
  v[1].i32 = ROOT_ID;
  call(c, &host->on_context_create, v, 2, "proxy_on_context_create");
  v[0].i32 = id;
  v[1].i32 = (int32_t)host->stream.request.len;
  v[2].i32 = 1;
  call(c, &host->on_request_headers, v, 3, "proxy_on_request_headers");
  if (v[0].i32 != 0) die("proxy_on_request_headers did not continue", NULL, NULL);
  v[0].i32 = id;
  v[1].i32 = (int32_t)host->stream.response.len;
  v[2].i32 = 1;
  call(c, &host->on_response_headers, v, 3, "proxy_on_response_headers");
  if (v[0].i32 != 0) die("proxy_on_response_headers did not continue", NULL, NULL);
  v[0].i32 = id;
  call(c, &host->on_log, v, 1, "proxy_on_log");
  v[0].i32 = id;
  call(c, &host->on_done, v, 1, "proxy_on_done");
  v[0].i32 = id;
  call(c, &host->on_delete, v, 1, "proxy_on_delete");
}

static int64_t cpu_nanos(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static bytes_t read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "wasmtime-floor: cannot open %s\n", path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  bytes_t b = {checked(malloc(size + 1)), (uint32_t)size};
  if (fread(b.data, 1, size, f) != (size_t)size) {
    fprintf(stderr, "wasmtime-floor: cannot read %s\n", path);
    exit(1);
  }
  b.data[size] = 0;
  fclose(f);
  return b;
}

static void read_spec(host_t *host, const char *path) {
  bytes_t text = read_file(path);
  int line_no = 0;
  for (char *line = text.data, *next; line && *line; line = next) {
    line_no++;
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    if (!*line) continue;
    char *f[4] = {line, NULL, NULL, NULL};
    int count = 1;
    for (char *t = line; *t && count < 4; t++)
      if (*t == '\t') {
        *t = 0;
        f[count++] = t + 1;
      }
    if (count == 2 && strcmp(f[0], "wasm") == 0) {
      host->wasm = read_file(f[1]);
    } else if (count == 2 && strcmp(f[0], "config") == 0) {
      host->config = copy_bytes(f[1], strlen(f[1]));
    } else if (count == 3 && strcmp(f[0], "request") == 0) {
      map_add(&host->spec_request, f[1], strlen(f[1]), f[2], strlen(f[2]));
    } else if (count == 3 && strcmp(f[0], "response") == 0) {
      map_add(&host->spec_response, f[1], strlen(f[1]), f[2], strlen(f[2]));
    } else {
      fprintf(stderr, "wasmtime-floor: %s:%d: unknown line\n", path, line_no);
      exit(1);
    }
  }
  if (host->wasm.data == NULL) {
    fprintf(stderr, "wasmtime-floor: %s: no wasm line\n", path);
    exit(1);
  }
}

static void show_map(const char *side, const header_map_t *map) {
  for (size_t i = 0; i < map->len; i++)
    printf("%s\t%.*s\t%.*s\n", side, (int)map->items[i].name.size, map->items[i].name.data,
           (int)map->items[i].value.size, map->items[i].value.data);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fputs("usage: wasmtime-floor SPEC\n", stderr);
    return 2;
  }
  static host_t host;
  read_spec(&host, argv[1]);
  host.engine = wasm_engine_new();
  wasmtime_error_t *error = wasmtime_module_new(
      host.engine, (const uint8_t *)host.wasm.data, host.wasm.size, &host.module);
  if (error != NULL) die("compile", error, NULL);
  start(&host);
  printf("ready floor\n");
  fflush(stdout);

  char line[256];
  while (fgets(line, sizeof line, stdin) != NULL) {
    long n = 0;
    if (sscanf(line, "run %ld", &n) == 1 && n > 0) {
      int64_t began = cpu_nanos();
      for (long i = 0; i < n; i++) {
        lifecycle(&host);
        end_stream(&host);
      }
      printf("ran %ld %lld\n", n, (long long)(cpu_nanos() - began));
    } else if (strcmp(line, "fresh\n") == 0) {
      start(&host);
      printf("fresh\n");
    } else if (strcmp(line, "show\n") == 0) {
      lifecycle(&host);
      show_map("request", &host.stream.request);
      show_map("response", &host.stream.response);
      static const char *levels[] = {"trace", "debug", "info", "warn", "error", "critical"};
      for (size_t i = 0; i < host.stream.logs.len; i++) {
        const log_t *l = &host.stream.logs.items[i];
        printf("log\t%s\t%.*s\n", l->level >= 0 && l->level < 6 ? levels[l->level] : "?",
               (int)l->text.size, l->text.data);
      }
      end_stream(&host);
      printf("end\n");
    } else if (strcmp(line, "quit\n") == 0) {
      break;
    } else {
      fprintf(stderr, "wasmtime-floor: unknown command %s", line);
      return 1;
    }
    fflush(stdout);
  }
  return 0;
}
