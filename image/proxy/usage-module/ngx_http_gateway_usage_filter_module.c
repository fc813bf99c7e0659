/*
 * ollama-gateway token accounting as an nginx body filter (issue 16).
 *
 * Why hand-written C: the accounting has to read every response chunk, and lua-nginx-module's
 * entry into Lua per chunk alone costs +57 % of nginx's own work on a stream (body_filter_by_lua
 * returning at once; bench/results/governance.md). Nothing packaged for nginx reads token counts
 * out of a streamed body, so this small filter does what nginx/lua/gateway/usage.lua did (its
 * header says where the numbers come from; the numbers are the same):
 *
 *   gateway_usage <value>;   value (variables allowed) "final": Ollama's native /api/generate and
 *                            /api/chat, counts from the last line when it is the done object;
 *                            "scan": other inference routes, the last count fields in the body;
 *                            anything else: only the time to the first byte is taken.
 *
 * Counts are taken from 200 responses only. Every buffer goes on to the next filter unchanged
 * and at once: the filter only looks. Variables, read by the log phase:
 *   $gateway_ttft_ms             ms from the request's start to the first body byte (or the end
 *                                of an empty body); empty when no body filter call saw either.
 *   $gateway_prompt_tokens       empty when no count was found, else both counts (0 for a
 *   $gateway_completion_tokens   missing one).
 *   $gateway_chunks              body filter calls that carried bytes of a counted response.
 *
 * Per chunk of a native stream the work is a look at the buffer's last bytes: Ollama's non-final
 * lines end with `,"done":false}\n`, and a line ending so decodes to done = false whatever came
 * before it (see ngx_http_gw_usage_body_filter). Only other chunks are parsed.
 *
 * A count that is negative counts 0 (an upstream must not give tokens back against a budget).
 * Where it may differ from usage.lua, on input Ollama never sends: a count that is not a JSON
 * integer of at most 18 digits counts 0 (so does Lua's, but it reads 1e2 or 100.0 as 100, and
 * logs an integer of over 14 digits with 14 significant ones); a top-level key written with
 * escapes is not recognised; JSON that only lua-cjson accepts (NaN, hex numbers, a raw control
 * character in a string) is invalid here. A scan-mode count of over 18 digits is cut to its
 * first 18 (in both).
 * test/usage-filter-fuzz.test.ts checks both against a reference of these rules.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* The final line is kept up to this size (a GenerateResponse's `context` grows with the
 * conversation); past it the counts are unknown. */
#define GW_MAX_FINAL_LINE  (8 * 1024 * 1024)
/* Bytes of one chunk scanned together with the next one's start (a field split across them). */
#define GW_TAIL            40
/* cjson's default nesting limit: a deeper final line is not decoded. */
#define GW_MAX_DEPTH       1000

#if defined(__GNUC__)
#define GW_NOINLINE  __attribute__((noinline))
#else
#define GW_NOINLINE
#endif

/* How Ollama's non-final NDJSON lines end (the fast path). */
#define GW_NOT_DONE        ",\"done\":false}\n"

#define GW_MODE_NONE   0
#define GW_MODE_FINAL  1
#define GW_MODE_SCAN   2


typedef struct {
    ngx_http_complex_value_t  *mode;
} ngx_http_gw_usage_loc_conf_t;


typedef struct {
    u_char      *data;
    size_t       len;
    size_t       cap;
} ngx_http_gw_usage_buf_t;


typedef struct {
    ngx_msec_int_t             ttft;
    ngx_uint_t                 chunks;
    int64_t                    prompt;
    int64_t                    completion;
    ngx_uint_t                 mode;
    unsigned                   have_prompt:1;
    unsigned                   have_completion:1;
    /* final mode: the counts of the newest complete text, decided when it arrived */
    unsigned                   have_final:1;
    int64_t                    final_prompt;
    int64_t                    final_completion;
    /* final mode: bytes of chunks since the last chunk that ended a line */
    ngx_http_gw_usage_buf_t    pieces;
    /* joins a chunk made of several buffers */
    ngx_http_gw_usage_buf_t    scratch;
    /* scan mode: the last bytes of the previous chunk */
    u_char                     tail[GW_TAIL];
    size_t                     tail_len;
    unsigned                   has_tail:1;
} ngx_http_gw_usage_ctx_t;


typedef struct {
    u_char      *p;
    u_char      *end;
    ngx_uint_t   depth;
    unsigned     done:1;
    unsigned     has_prompt:1;
    unsigned     has_completion:1;
    int64_t      prompt;
    int64_t      completion;
} ngx_http_gw_json_t;


static ngx_int_t ngx_http_gw_usage_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_gw_usage_init(ngx_conf_t *cf);
static void *ngx_http_gw_usage_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_gw_usage_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_command_t  ngx_http_gw_usage_commands[] = {

    { ngx_string("gateway_usage"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gw_usage_loc_conf_t, mode),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gw_usage_filter_module_ctx = {
    ngx_http_gw_usage_add_variables,       /* preconfiguration */
    ngx_http_gw_usage_init,                /* postconfiguration */
    NULL, NULL, NULL, NULL,
    ngx_http_gw_usage_create_loc_conf,
    ngx_http_gw_usage_merge_loc_conf
};


ngx_module_t  ngx_http_gateway_usage_filter_module = {
    NGX_MODULE_V1,
    &ngx_http_gw_usage_filter_module_ctx,
    ngx_http_gw_usage_commands,
    NGX_HTTP_MODULE,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


/* ---- a strict JSON reader for the final line: top-level done / prompt_eval_count / eval_count */

static void
gw_json_ws(ngx_http_gw_json_t *j)
{
    while (j->p < j->end
           && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    {
        j->p++;
    }
}


/* A string at j->p; its raw content in *s, *len (escapes left as they are). */
static ngx_int_t
gw_json_string(ngx_http_gw_json_t *j, u_char **s, size_t *len, ngx_uint_t *escaped)
{
    u_char      c;
    ngx_uint_t  i;

    if (j->p >= j->end || *j->p != '"') {
        return NGX_ERROR;
    }

    *s = ++j->p;
    *escaped = 0;

    while (j->p < j->end) {
        c = *j->p++;

        if (c == '"') {
            *len = j->p - 1 - *s;
            return NGX_OK;
        }

        /* JSON has no raw control characters in a string (lua-cjson even ends the text at NUL) */
        if (c < 0x20) {
            return NGX_ERROR;
        }

        if (c != '\\') {
            continue;
        }

        *escaped = 1;

        if (j->p >= j->end) {
            return NGX_ERROR;
        }

        c = *j->p++;

        switch (c) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            break;

        case 'u':
            for (i = 0; i < 4; i++) {
                if (j->p >= j->end || !isxdigit(*j->p)) {
                    return NGX_ERROR;
                }
                j->p++;
            }
            break;

        default:
            return NGX_ERROR;
        }
    }

    return NGX_ERROR;
}


/* A number at j->p; *value set when it is an integer that fits. */
static ngx_int_t
gw_json_number(ngx_http_gw_json_t *j, int64_t *value, ngx_uint_t *integer)
{
    ngx_uint_t   neg, digits;
    int64_t      v;

    neg = 0;
    v = 0;
    *integer = 1;

    if (j->p < j->end && *j->p == '-') {
        neg = 1;
        j->p++;
    }

    if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
        return NGX_ERROR;
    }

    if (*j->p == '0') {
        j->p++;
        digits = 1;

    } else {
        for (digits = 0; j->p < j->end && *j->p >= '0' && *j->p <= '9'; digits++) {
            if (digits < 18) {
                v = v * 10 + (*j->p - '0');
            }
            j->p++;
        }
    }

    if (digits > 18) {
        *integer = 0;
    }

    if (j->p < j->end && *j->p == '.') {
        j->p++;
        *integer = 0;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
            return NGX_ERROR;
        }
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            j->p++;
        }
    }

    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        *integer = 0;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) {
            j->p++;
        }
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
            return NGX_ERROR;
        }
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            j->p++;
        }
    }

    *value = neg ? -v : v;

    return NGX_OK;
}


static ngx_int_t
gw_json_literal(ngx_http_gw_json_t *j, const char *word, size_t len)
{
    if ((size_t) (j->end - j->p) < len || ngx_strncmp(j->p, word, len) != 0) {
        return NGX_ERROR;
    }

    j->p += len;

    return NGX_OK;
}


/* Which top-level member a value belongs to (0: none of interest). */
#define GW_KEY_DONE        1
#define GW_KEY_PROMPT      2
#define GW_KEY_COMPLETION  3

static ngx_int_t gw_json_value(ngx_http_gw_json_t *j, ngx_uint_t key);


/* An object's member key and colon: which member of interest it names (top level only). */
static ngx_int_t
gw_json_key(ngx_http_gw_json_t *j, ngx_uint_t top, ngx_uint_t *key)
{
    u_char      *s;
    size_t       len;
    ngx_uint_t   escaped;

    if (gw_json_string(j, &s, &len, &escaped) != NGX_OK) {
        return NGX_ERROR;
    }

    *key = 0;

    /* Keys with escapes are never Ollama's; they count as other keys. */
    if (top && !escaped) {
        if (len == 4 && ngx_strncmp(s, "done", 4) == 0) {
            *key = GW_KEY_DONE;

        } else if (len == 17 && ngx_strncmp(s, "prompt_eval_count", 17) == 0) {
            *key = GW_KEY_PROMPT;

        } else if (len == 10 && ngx_strncmp(s, "eval_count", 10) == 0) {
            *key = GW_KEY_COMPLETION;
        }
    }

    gw_json_ws(j);

    if (j->p >= j->end || *j->p != ':') {
        return NGX_ERROR;
    }

    j->p++;
    gw_json_ws(j);

    return NGX_OK;
}


/* An object or array at j->p, up to its closing bracket. */
static ngx_int_t
gw_json_container(ngx_http_gw_json_t *j)
{
    u_char      close;
    ngx_uint_t  key, top;

    close = (*j->p == '{') ? '}' : ']';
    top = (close == '}' && j->depth == 1);

    j->p++;
    gw_json_ws(j);

    if (j->p < j->end && *j->p == close) {
        j->p++;
        return NGX_OK;
    }

    for ( ;; ) {
        key = 0;

        if (close == '}' && gw_json_key(j, top, &key) != NGX_OK) {
            return NGX_ERROR;
        }

        if (gw_json_value(j, key) != NGX_OK) {
            return NGX_ERROR;
        }

        gw_json_ws(j);

        if (j->p >= j->end) {
            return NGX_ERROR;
        }

        if (*j->p == close) {
            j->p++;
            return NGX_OK;
        }

        if (*j->p != ',') {
            return NGX_ERROR;
        }

        j->p++;
        gw_json_ws(j);
    }
}


static ngx_int_t
gw_json_value(ngx_http_gw_json_t *j, ngx_uint_t key)
{
    u_char      *s;
    size_t       len;
    int64_t      v;
    ngx_int_t    rc;
    ngx_uint_t   escaped, integer, is_true;

    if (j->p >= j->end) {
        return NGX_ERROR;
    }

    is_true = 0;
    v = 0;

    switch (*j->p) {

    case '{':
    case '[':
        if (++j->depth > GW_MAX_DEPTH) {
            return NGX_ERROR;
        }
        rc = gw_json_container(j);
        j->depth--;
        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
        break;

    case '"':
        if (gw_json_string(j, &s, &len, &escaped) != NGX_OK) {
            return NGX_ERROR;
        }
        break;

    case 't':
        if (gw_json_literal(j, "true", 4) != NGX_OK) {
            return NGX_ERROR;
        }
        is_true = 1;
        break;

    case 'f':
        if (gw_json_literal(j, "false", 5) != NGX_OK) {
            return NGX_ERROR;
        }
        break;

    case 'n':
        if (gw_json_literal(j, "null", 4) != NGX_OK) {
            return NGX_ERROR;
        }
        break;

    default:
        if (gw_json_number(j, &v, &integer) != NGX_OK) {
            return NGX_ERROR;
        }
        /*
         * Only integers are Ollama's counts; a negative one counts 0 too, or an upstream could
         * give a caller tokens back against its budget.
         */
        if (!integer || v < 0) {
            v = 0;
        }
        break;
    }

    /* A repeated key: the last one wins, as in cjson. Anything but a number counts 0. */
    switch (key) {
    case GW_KEY_DONE:
        j->done = is_true;
        break;

    case GW_KEY_PROMPT:
        j->prompt = v;
        j->has_prompt = 1;
        break;

    case GW_KEY_COMPLETION:
        j->completion = v;
        j->has_completion = 1;
        break;
    }

    return NGX_OK;
}


/*
 * The counts of the last line of `text` (trailing CR/LF ignored) when it is Ollama's final
 * object: valid JSON whose top-level `done` is true. NGX_DECLINED otherwise.
 */
static ngx_int_t
gw_final_counts(u_char *text, size_t len, int64_t *prompt, int64_t *completion)
{
    u_char              *last, *start;
    ngx_http_gw_json_t   j;

    last = text + len;
    while (last > text && (last[-1] == '\n' || last[-1] == '\r')) {
        last--;
    }

    start = last;
    while (start > text && start[-1] != '\n') {
        start--;
    }

    ngx_memzero(&j, sizeof(ngx_http_gw_json_t));
    j.p = start;
    j.end = last;

    gw_json_ws(&j);

    if (j.p >= j.end || *j.p != '{') {
        return NGX_DECLINED;
    }

    if (gw_json_value(&j, 0) != NGX_OK) {
        return NGX_DECLINED;
    }

    gw_json_ws(&j);

    if (j.p != j.end || !j.done) {
        return NGX_DECLINED;
    }

    *prompt = j.has_prompt ? j.prompt : 0;
    *completion = j.has_completion ? j.completion : 0;

    return NGX_OK;
}


/* ---- the last count fields of a body (scan mode) */

typedef struct {
    const char  *name;
    size_t       len;
    ngx_uint_t   prompt;
} gw_field_t;

static gw_field_t  gw_fields[] = {
    { "prompt_tokens\":", 15, 1 },
    { "input_tokens\":", 14, 1 },
    { "prompt_eval_count\":", 19, 1 },
    { "completion_tokens\":", 19, 0 },
    { "output_tokens\":", 15, 0 },
    { "eval_count\":", 12, 0 },
};


/*
 * Every `"<field>":[ ]*<digits>` followed by a non-digit in `text`, in order, as usage.lua's
 * pattern found them: the last of each kind wins.
 */
static void
gw_scan(ngx_http_gw_usage_ctx_t *ctx, u_char *text, size_t len)
{
    u_char      *p, *end, *q, *digits;
    int64_t      v;
    ngx_uint_t   i;

    end = text + len;

    for (p = text; p < end; p++) {
        p = ngx_strlchr(p, end, '"');
        if (p == NULL) {
            return;
        }

        for (i = 0; i < sizeof(gw_fields) / sizeof(gw_fields[0]); i++) {
            if ((size_t) (end - p - 1) >= gw_fields[i].len
                && ngx_strncmp(p + 1, gw_fields[i].name, gw_fields[i].len) == 0)
            {
                break;
            }
        }

        if (i == sizeof(gw_fields) / sizeof(gw_fields[0])) {
            continue;
        }

        q = p + 1 + gw_fields[i].len;
        while (q < end && *q == ' ') {
            q++;
        }

        digits = q;
        v = 0;
        while (q < end && *q >= '0' && *q <= '9') {
            if (q - digits < 18) {
                v = v * 10 + (*q - '0');
            }
            q++;
        }

        /* at least one digit, and a non-digit after them */
        if (q == digits || q == end) {
            continue;
        }

        if (gw_fields[i].prompt) {
            ctx->prompt = v;
            ctx->have_prompt = 1;

        } else {
            ctx->completion = v;
            ctx->have_completion = 1;
        }

        p = q - 1;
    }
}


/* ---- buffers */

static void
gw_buf_cleanup(void *data)
{
    ngx_http_gw_usage_ctx_t  *ctx = data;

    if (ctx->pieces.data) {
        ngx_free(ctx->pieces.data);
    }

    if (ctx->scratch.data) {
        ngx_free(ctx->scratch.data);
    }
}


static ngx_int_t
gw_buf_append(ngx_http_gw_usage_buf_t *b, u_char *data, size_t len, ngx_log_t *log)
{
    u_char  *p;
    size_t   cap;

    if (b->len + len > b->cap) {
        cap = ngx_max(b->cap * 2, b->len + len);
        cap = ngx_max(cap, 4096);

        p = ngx_alloc(cap, log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (b->len) {
            ngx_memcpy(p, b->data, b->len);
        }

        if (b->data) {
            ngx_free(b->data);
        }

        b->data = p;
        b->cap = cap;
    }

    ngx_memcpy(b->data + b->len, data, len);
    b->len += len;

    return NGX_OK;
}


/*
 * The bytes the chain carries, as one piece of memory (as usage.lua's ngx.arg[1] saw them:
 * in-memory buffers only). Joined into ctx->scratch when there are several.
 */
static ngx_int_t
gw_chunk(ngx_http_gw_usage_ctx_t *ctx, ngx_chain_t *in, u_char **data, size_t *len,
    ngx_log_t *log)
{
    ngx_buf_t    *b, *only;
    ngx_chain_t  *cl;
    ngx_uint_t    n;

    only = NULL;
    n = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;
        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            only = b;
            n++;
        }
    }

    if (n == 0) {
        *len = 0;
        return NGX_OK;
    }

    if (n == 1) {
        *data = only->pos;
        *len = only->last - only->pos;
        return NGX_OK;
    }

    ctx->scratch.len = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;
        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            if (gw_buf_append(&ctx->scratch, b->pos, b->last - b->pos, log) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    *data = ctx->scratch.data;
    *len = ctx->scratch.len;

    return NGX_OK;
}


/* ---- the filter */

static ngx_uint_t
gw_mode(ngx_http_request_t *r, ngx_http_gw_usage_loc_conf_t *lcf)
{
    ngx_str_t  value;

    if (r->headers_out.status != NGX_HTTP_OK
        || ngx_http_complex_value(r, lcf->mode, &value) != NGX_OK)
    {
        return GW_MODE_NONE;
    }

    if (value.len == 5 && ngx_strncmp(value.data, "final", 5) == 0) {
        return GW_MODE_FINAL;
    }

    if (value.len == 4 && ngx_strncmp(value.data, "scan", 4) == 0) {
        return GW_MODE_SCAN;
    }

    return GW_MODE_NONE;
}


static ngx_http_gw_usage_ctx_t *
gw_start(ngx_http_request_t *r, ngx_http_gw_usage_loc_conf_t *lcf)
{
    ngx_time_t                *tp;
    ngx_msec_int_t             ms;
    ngx_pool_cleanup_t        *cln;
    ngx_http_gw_usage_ctx_t   *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gw_usage_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = gw_buf_cleanup;
    cln->data = ctx;

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000 + (tp->msec - r->start_msec));
    ctx->ttft = ngx_max(ms, 0);
    ctx->mode = gw_mode(r, lcf);

    ngx_http_set_ctx(r, ctx, ngx_http_gateway_usage_filter_module);

    return ctx;
}


/* Whether text is only line ends (CR, LF): after a line, it leaves that line the last one. */
static ngx_uint_t
gw_blank(u_char *p, size_t len)
{
    while (len && (*p == '\n' || *p == '\r')) {
        p++;
        len--;
    }

    return len == 0;
}


/* A chunk that ends a line, with `pieces` before it: the counts its text's last line gives. */
static ngx_int_t
gw_final_line_ended(ngx_http_gw_usage_ctx_t *ctx, u_char *data, size_t len, ngx_log_t *log)
{
    u_char  *last, *p;

    /* Where the text's last line is: in the chunk when a newline before its end is there. */
    last = data + len;
    while (last > data && (last[-1] == '\n' || last[-1] == '\r')) {
        last--;
    }

    if (last == data && ctx->pieces.len == 0) {
        /* only line ends after a line's end: the last line is still the one before them */
        return NGX_OK;
    }

    p = NULL;
    if (last > data) {
        for (p = last - 1; p >= data && *p != '\n'; p--) { /* void */ }
        if (p < data) {
            p = NULL;
        }
    }

    if (ctx->pieces.len == 0 || p != NULL) {
        ctx->have_final = (gw_final_counts(data, len, &ctx->final_prompt,
                                           &ctx->final_completion) == NGX_OK);
    } else {
        if (gw_buf_append(&ctx->pieces, data, len, log) != NGX_OK) {
            return NGX_ERROR;
        }
        if (!gw_blank(ctx->pieces.data, ctx->pieces.len)) {
            ctx->have_final = (gw_final_counts(ctx->pieces.data, ctx->pieces.len,
                                               &ctx->final_prompt,
                                               &ctx->final_completion) == NGX_OK);
        }
    }

    ctx->pieces.len = 0;

    return NGX_OK;
}


/*
 * The fast path's test: the 16 bytes before `last` are any byte, then GW_NOT_DONE. Two 8-byte
 * loads compared with values made from the string at start-up (any byte order).
 */
static uint64_t  gw_not_done_head, gw_not_done_mask, gw_not_done_tail;

static void
gw_not_done_init(void)
{
    u_char  pattern[16], mask[8];

    pattern[0] = 0;
    ngx_memcpy(pattern + 1, GW_NOT_DONE, 15);
    ngx_memset(mask, 0xff, 8);
    mask[0] = 0;

    ngx_memcpy(&gw_not_done_head, pattern, 8);
    ngx_memcpy(&gw_not_done_tail, pattern + 8, 8);
    ngx_memcpy(&gw_not_done_mask, mask, 8);
}


static ngx_inline ngx_uint_t
gw_ends_not_done(u_char *last)
{
    uint64_t  head, tail;

    ngx_memcpy(&head, last - 16, 8);
    ngx_memcpy(&tail, last - 8, 8);

    return (head & gw_not_done_mask) == gw_not_done_head && tail == gw_not_done_tail;
}


/* Whether a chain's bytes end with a non-final line, and carry no end of the response. */
static ngx_uint_t
gw_chain_not_done(ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = NULL;

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf || cl->buf->last_in_chain) {
            return 0;
        }

        if (ngx_buf_in_memory(cl->buf) && cl->buf->last > cl->buf->pos) {
            b = cl->buf;
        }
    }

    return b != NULL && b->last - b->pos >= 16 && gw_ends_not_done(b->last);
}


/* Scan mode: a chunk's fields, and those split between the previous chunk's tail and it. */
static void
gw_scan_chunk(ngx_http_gw_usage_ctx_t *ctx, u_char *data, size_t len)
{
    size_t   n;
    u_char  *head, joined[2 * GW_TAIL];

    if (ctx->has_tail) {
        n = ngx_min(len, GW_TAIL);
        head = ngx_cpymem(joined, ctx->tail, ctx->tail_len);
        ngx_memcpy(head, data, n);
        gw_scan(ctx, joined, ctx->tail_len + n);
    }

    gw_scan(ctx, data, len);

    if (len >= GW_TAIL) {
        ngx_memcpy(ctx->tail, data + len - GW_TAIL, GW_TAIL);
        ctx->tail_len = GW_TAIL;

    } else {
        /* the last GW_TAIL bytes of the old tail and this chunk */
        n = ngx_min(ctx->tail_len, GW_TAIL - len);
        ngx_memmove(ctx->tail, ctx->tail + ctx->tail_len - n, n);
        ngx_memcpy(ctx->tail + n, data, len);
        ctx->tail_len = n + len;
    }

    ctx->has_tail = 1;
}


/* Everything but the fast path: the first chunk, and any chunk that needs a look inside. */
static ngx_int_t
gw_update(ngx_http_request_t *r, ngx_http_gw_usage_ctx_t *ctx, ngx_chain_t *in)
{
    u_char                        *data;
    size_t                         len, n;
    ngx_uint_t                     eof;
    ngx_chain_t                   *cl;
    ngx_http_gw_usage_loc_conf_t  *lcf;

    eof = 0;
    n = 0;
    for (cl = in; cl; cl = cl->next) {
        if (ngx_buf_in_memory(cl->buf)) {
            n += cl->buf->last - cl->buf->pos;
        }
        if (cl->buf->last_buf || cl->buf->last_in_chain) {
            eof = 1;
        }
    }

    if (ctx == NULL) {
        lcf = ngx_http_get_module_loc_conf(r, ngx_http_gateway_usage_filter_module);

        /* usage.lua began at the first chunk with bytes, or at the end */
        if (lcf->mode == NULL || (n == 0 && !eof)) {
            return NGX_OK;
        }

        ctx = gw_start(r, lcf);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        if (ctx->mode == GW_MODE_NONE) {
            return NGX_OK;
        }
    }

    if (n == 0) {
        len = 0;

    } else if (ctx->mode == GW_MODE_FINAL && gw_chain_not_done(in)) {
        /* several lines in one read, the last one not final (see the fast path) */
        ctx->chunks++;
        ctx->have_final = 0;
        ctx->pieces.len = 0;
        return NGX_OK;

    } else if (gw_chunk(ctx, in, &data, &len, r->connection->log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (len) {
        ctx->chunks++;

        if (ctx->mode == GW_MODE_SCAN) {
            gw_scan_chunk(ctx, data, len);

        } else if (data[len - 1] == '\n') {
            if (gw_final_line_ended(ctx, data, len, r->connection->log) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (ctx->pieces.len + len > GW_MAX_FINAL_LINE) {
            ctx->mode = GW_MODE_NONE;
            ctx->pieces.len = 0;
            return NGX_OK;

        } else if (gw_buf_append(&ctx->pieces, data, len, r->connection->log) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (eof && ctx->mode == GW_MODE_FINAL) {
        if (ctx->pieces.len && !gw_blank(ctx->pieces.data, ctx->pieces.len)) {
            ctx->have_final = (gw_final_counts(ctx->pieces.data, ctx->pieces.len,
                                               &ctx->final_prompt,
                                               &ctx->final_completion) == NGX_OK);
        }

        ctx->pieces.len = 0;

        if (ctx->have_final) {
            ctx->prompt = ctx->final_prompt;
            ctx->completion = ctx->final_completion;
            ctx->have_prompt = 1;
            ctx->have_completion = 1;
        }
    }

    return NGX_OK;
}


/* The filter but for the fast path; out of line, so the fast path needs no stack frame. */
static GW_NOINLINE ngx_int_t
gw_filter(ngx_http_request_t *r, ngx_http_gw_usage_ctx_t *ctx, ngx_chain_t *in)
{
    if (in != NULL && (ctx == NULL || ctx->mode != GW_MODE_NONE)
        && gw_update(r, ctx, in) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_body_filter(r, in);
}


static ngx_int_t
ngx_http_gw_usage_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                *b;
    ngx_http_gw_usage_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_usage_filter_module);

    if (ctx != NULL && ctx->mode == GW_MODE_FINAL && in != NULL && in->next == NULL) {
        /*
         * The fast path, per chunk of a native stream: one buffer ending `,"done":false}\n`.
         * That line's last top-level member is done = false (the comma and quote outside a
         * string, the brace closing the outermost object), so it is not the final object,
         * whatever came before it in the buffer, and the chunk needs no other look.
         */
        b = in->buf;

        if (b->last - b->pos >= 16 && !b->last_buf && !b->last_in_chain
            && ngx_buf_in_memory(b) && gw_ends_not_done(b->last))
        {
            ctx->chunks++;
            ctx->have_final = 0;
            ctx->pieces.len = 0;
            return ngx_http_next_body_filter(r, in);
        }
    }

    return gw_filter(r, ctx, in);
}


/* ---- variables */

enum {
    GW_VAR_TTFT = 0,
    GW_VAR_PROMPT,
    GW_VAR_COMPLETION,
    GW_VAR_CHUNKS
};


static ngx_int_t
ngx_http_gw_usage_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                   *p;
    int64_t                   value;
    ngx_http_gw_usage_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_usage_filter_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {
    case GW_VAR_TTFT:
        value = ctx->ttft;
        break;

    case GW_VAR_PROMPT:
    case GW_VAR_COMPLETION:
        if (!ctx->have_prompt && !ctx->have_completion) {
            v->not_found = 1;
            return NGX_OK;
        }
        value = (data == GW_VAR_PROMPT)
                ? (ctx->have_prompt ? ctx->prompt : 0)
                : (ctx->have_completion ? ctx->completion : 0);
        break;

    default: /* GW_VAR_CHUNKS */
        value = ctx->chunks;
        break;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%L", value) - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}


/*
 * The same four numbers for the gateway's Lua log phase in one call through LuaJIT's FFI
 * (gateway/usage.lua; nginx loads modules RTLD_GLOBAL), instead of four variable reads, each a
 * hash lookup and a string to parse (~2,500 instructions a request in all). out[0] ttft ms,
 * out[1] prompt and out[2] completion tokens (-1 both while no count was read), out[3] chunks.
 * Returns -1 when the filter did not see the response (no variable would be found either).
 */
int ngx_http_gateway_usage_get(ngx_http_request_t *r, int64_t *out);

int
ngx_http_gateway_usage_get(ngx_http_request_t *r, int64_t *out)
{
    ngx_http_gw_usage_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_usage_filter_module);

    if (ctx == NULL) {
        return -1;
    }

    out[0] = ctx->ttft;

    if (ctx->have_prompt || ctx->have_completion) {
        out[1] = ctx->have_prompt ? ctx->prompt : 0;
        out[2] = ctx->have_completion ? ctx->completion : 0;

    } else {
        out[1] = -1;
        out[2] = -1;
    }

    out[3] = ctx->chunks;

    return 0;
}


static ngx_http_variable_t  ngx_http_gw_usage_vars[] = {
    { ngx_string("gateway_ttft_ms"), NULL, ngx_http_gw_usage_variable,
      GW_VAR_TTFT, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("gateway_prompt_tokens"), NULL, ngx_http_gw_usage_variable,
      GW_VAR_PROMPT, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("gateway_completion_tokens"), NULL, ngx_http_gw_usage_variable,
      GW_VAR_COMPLETION, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("gateway_chunks"), NULL, ngx_http_gw_usage_variable,
      GW_VAR_CHUNKS, NGX_HTTP_VAR_NOCACHEABLE, 0 },
      ngx_http_null_variable
};


static ngx_int_t
ngx_http_gw_usage_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_gw_usage_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_gw_usage_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_gw_usage_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gw_usage_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->mode = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_gw_usage_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_gw_usage_loc_conf_t  *prev = parent;
    ngx_http_gw_usage_loc_conf_t  *conf = child;

    ngx_conf_merge_ptr_value(conf->mode, prev->mode, NULL);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_gw_usage_init(ngx_conf_t *cf)
{
    gw_not_done_init();

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_gw_usage_body_filter;

    return NGX_OK;
}
