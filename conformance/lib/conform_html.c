/* report.html: one self-contained page per conformance run.  Inline CSS and inline
 * SVG only: no script, no font, no image, no link to anything outside the file, so
 * it can be archived as a CI artifact and opened anywhere (and nothing in it can
 * phone home).  Text from test output is escaped, and "://" in it is written with an
 * entity so that not even a URL a backend printed appears in the file as one. */
#include "kvfp8/conform.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void esc(FILE *f, const char *s) {
    for (const char *p = s ? s : ""; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case ':':
            if (p[1] == '/' && p[2] == '/') {
                fputs(":&#47;", f);
                break;
            }
            fputc(*p, f);
            break;
        default: fputc(*p, f);
        }
    }
}

static const char *str(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static double metric(json_t *rec, const char *key, int *present) {
    json_t *v = json_object_get(json_object_get(rec, "metrics"), key);
    *present = json_is_number(v);
    return json_number_value(v);
}

static const char *result_color(const char *r) {
    if (!strcmp(r, "PASS"))
        return "#1a7f37";
    if (!strcmp(r, "FAIL"))
        return "#cf222e";
    if (!strcmp(r, "NOT_SUPPORTED"))
        return "#6e7781";
    if (!strcmp(r, "WAIVED"))
        return "#9a6700";
    if (!strcmp(r, "CRASH"))
        return "#8250df";
    return "#bc4c00"; /* TIMEOUT */
}

static void header_section(FILE *f, json_t *header, json_t *records) {
    char why[400];
    const int ok = kvfp8_conform_verdict(records, why, sizeof why);
    fputs("<h1>kvfp8 conformance: ", f);
    esc(f, str(header, "backend"));
    fprintf(f, " <span class=\"verdict %s\">%s</span></h1>\n<p>", ok ? "ok" : "bad",
            ok ? "CONFORMANT" : "NOT CONFORMANT");
    esc(f, why);
    fputs("</p>\n<table class=\"kv\">\n", f);
    static const char *const keys[][2] = {{"backend", "backend"},        {"backend_name", "ops table name"},
                                          {"backend_arg", "--backend"}, {"list", "must-pass list"},
                                          {"selection", "selection"},   {"started", "started"},
                                          {"host", "host"},             {"tool", "tool"}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        fprintf(f, "<tr><th>%s</th><td>", keys[i][1]);
        esc(f, str(header, keys[i][0]));
        fputs("</td></tr>\n", f);
    }
    if (*str(header, "unavailable")) {
        fputs("<tr><th>not available</th><td>", f);
        esc(f, str(header, "unavailable"));
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static const char *const results[] = {"PASS", "FAIL", "NOT_SUPPORTED", "WAIVED", "CRASH", "TIMEOUT"};

static void summary_section(FILE *f, json_t *records) {
    fputs("<h2>Summary</h2>\n<table class=\"grid\"><tr><th>suite</th><th>tests</th>", f);
    for (size_t r = 0; r < 6; r++)
        fprintf(f, "<th style=\"color:%s\">%s</th>", result_color(results[r]), results[r]);
    fputs("</tr>\n", f);
    size_t i, j;
    json_t *rec, *other;
    int total[6] = {0}, all = 0;
    json_array_foreach(records, i, rec) {
        const char *suite = str(rec, "suite");
        int first = 1;
        for (j = 0; j < i && first; j++)
            first = strcmp(str(json_array_get(records, j), "suite"), suite) != 0;
        if (!first)
            continue;
        int c[6] = {0}, n = 0;
        json_array_foreach(records, j, other) {
            if (strcmp(str(other, "suite"), suite))
                continue;
            n++;
            for (size_t r = 0; r < 6; r++)
                c[r] += !strcmp(str(other, "result"), results[r]);
        }
        fprintf(f, "<tr><td><a href=\"#suite-%s\">%s</a></td><td>%d</td>", suite, suite, n);
        for (size_t r = 0; r < 6; r++) {
            fprintf(f, "<td>%d</td>", c[r]);
            total[r] += c[r];
        }
        all += n;
        fputs("</tr>\n", f);
    }
    fprintf(f, "<tr class=\"total\"><td>total</td><td>%d</td>", all);
    for (size_t r = 0; r < 6; r++)
        fprintf(f, "<td>%d</td>", total[r]);
    fputs("</tr></table>\n", f);
}

static void capabilities_section(FILE *f, json_t *header) {
    json_t *caps = json_object_get(header, "capabilities");
    if (!json_array_size(caps))
        return;
    fputs("<h2>What the backend claims</h2>\n<p>From its capability query (<code>supports</code>); "
          "a test of something declined is NOT_SUPPORTED, which is never a pass.</p>\n<ul class=\"caps\">\n",
          f);
    size_t i;
    json_t *v;
    json_array_foreach(caps, i, v) {
        fputs("<li>", f);
        esc(f, json_string_value(v));
        fputs("</li>\n", f);
    }
    fputs("</ul>\n", f);
}

/* ---- charts ---------------------------------------------------------------------------- */

#define LOG_MIN (-8.0)
#define LOG_MAX 1.0

static double log_x(double ratio, double x0, double w) {
    double l = ratio > 0 ? log10(ratio) : LOG_MIN;
    if (l < LOG_MIN)
        l = LOG_MIN;
    if (l > LOG_MAX)
        l = LOG_MAX;
    return x0 + (l - LOG_MIN) / (LOG_MAX - LOG_MIN) * w;
}

static void ratio_chart(FILE *f, json_t *records) {
    size_t i, rows = 0;
    json_t *rec;
    int present;
    json_array_foreach(records, i, rec) {
        metric(rec, "max_ratio", &present);
        rows += present;
    }
    fputs("<h2>Error against the bound</h2>\n", f);
    if (!rows) {
        fputs("<p>No BOUNDED results in this run.</p>\n", f);
        return;
    }
    fputs("<p>Largest |backend - float64 reference| / bound over each test's outputs (log scale). "
          "Left of the dashed line is inside the BOUNDED level; a ratio of exactly 0 is drawn at the left "
          "edge.</p>\n",
          f);
    const double label_w = 330, plot_w = 520, row_h = 18, top = 24;
    const double height = top + row_h * (double)rows + 30;
    fprintf(f, "<svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n",
            label_w + plot_w + 90, height, label_w + plot_w + 90, height);
    for (int d = (int)LOG_MIN; d <= (int)LOG_MAX; d++) {
        const double x = log_x(pow(10, d), label_w, plot_w);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" class=\"%s\"/>", x, top - 4, x,
                height - 26, d == 0 ? "bound" : "tick");
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" class=\"axis\" text-anchor=\"middle\">1e%d</text>\n", x, height - 12,
                d);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"14\" class=\"axis\" text-anchor=\"middle\">bound</text>\n",
            log_x(1, label_w, plot_w));
    size_t row = 0;
    json_array_foreach(records, i, rec) {
        const double r = metric(rec, "max_ratio", &present);
        if (!present)
            continue;
        const double y = top + row_h * (double)row++;
        const double x1 = log_x(r, label_w, plot_w);
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" class=\"label\" text-anchor=\"end\">", label_w - 6, y + 12);
        esc(f, str(rec, "id"));
        fprintf(f, "</text><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\"/>", label_w,
                y + 3, x1 - label_w < 1 ? 1 : x1 - label_w, row_h - 6, r <= 1 ? "#2da44e" : "#cf222e");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"value\">%.2g</text>\n", x1 + 4, y + 12, r);
    }
    fputs("</svg>\n", f);
}

static void histogram_chart(FILE *f, json_t *records) {
    double counts[KVFP8_CONFORM_HIST_BINS] = {0}, total = 0, max = 0;
    size_t i, b;
    json_t *rec, *v;
    json_array_foreach(records, i, rec) {
        json_array_foreach(json_object_get(rec, "histogram"), b, v) {
            if (b < KVFP8_CONFORM_HIST_BINS)
                counts[b] += json_number_value(v), total += json_number_value(v);
        }
    }
    if (total == 0)
        return;
    for (b = 0; b < KVFP8_CONFORM_HIST_BINS; b++)
        max = fmax(max, counts[b]);
    fprintf(f, "<h3>Distribution of error/bound over all %.0f checked outputs</h3>\n<p>Counts on a log scale; "
               "each bin runs from its label to the next; the last two are outside the bound.</p>\n",
            total);
    const double bar_w = 58, plot_h = 160, left = 20, top = 20;
    fprintf(f, "<svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" role=\"img\">\n",
            left + bar_w * KVFP8_CONFORM_HIST_BINS + 20, top + plot_h + 40);
    for (b = 0; b < KVFP8_CONFORM_HIST_BINS; b++) {
        const double h = counts[b] > 0 ? plot_h * log10(counts[b] + 1) / log10(max + 1) : 0;
        const double x = left + bar_w * (double)b;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.0f\" height=\"%.1f\" fill=\"%s\"/>", x + 4,
                top + plot_h - h, bar_w - 8, h, b >= KVFP8_CONFORM_HIST_BINS - 2 ? "#cf222e" : "#0969da");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"value\" text-anchor=\"middle\">%.0f</text>", x + bar_w / 2,
                top + plot_h - h - 3, counts[b]);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"axis\" text-anchor=\"middle\">", x + bar_w / 2,
                top + plot_h + 16);
        esc(f, kvfp8_conform_hist_label((int)b)); /* "<1e-8" */
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

static void bandwidth_chart(FILE *f, json_t *records) {
    size_t i, rows = 0;
    json_t *rec;
    int present;
    double top_bw = 0;
    json_array_foreach(records, i, rec) {
        const double bw = metric(rec, "bytes_per_second", &present);
        if (!present)
            continue;
        rows++;
        top_bw = fmax(top_bw, fmax(bw, metric(rec, "copy_bytes_per_second", &present)));
    }
    fputs("<h2>Bandwidth against the copy ceiling</h2>\n", f);
    if (!rows) {
        fputs("<p>No device timing in this run: the backend declines <code>device_timing</code> (an optional "
              "operation GPU backends provide), or the perf tests were not selected.</p>\n",
              f);
        return;
    }
    fputs("<p>Bytes an operation must move (inputs read once, outputs written once) per second of device time, "
          "against the backend's measured device-to-device copy (read + write). Informative: no test passes "
          "or fails on speed.</p>\n",
          f);
    const double label_w = 260, plot_w = 520, row_h = 26, top = 10;
    const double height = top + row_h * (double)rows + 34;
    fprintf(f, "<svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" role=\"img\">\n", label_w + plot_w + 160, height);
    size_t row = 0;
    json_array_foreach(records, i, rec) {
        const double bw = metric(rec, "bytes_per_second", &present);
        if (!present)
            continue;
        const double ceiling = metric(rec, "copy_bytes_per_second", &present);
        const double y = top + row_h * (double)row++;
        const double w = plot_w * bw / top_bw, cx = label_w + plot_w * ceiling / top_bw;
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" class=\"label\" text-anchor=\"end\">", label_w - 6, y + 16);
        esc(f, str(rec, "id"));
        fprintf(f, "</text><rect x=\"%.0f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"#0969da\"/>", label_w,
                y + 5, w < 1 ? 1 : w, row_h - 10);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"bound\"/>", cx, y + 1, cx,
                y + row_h - 1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"value\">%.1f GB/s (%.0f%% of %.1f)</text>\n",
                fmax(label_w + w, cx) + 6, y + 16, bw / 1e9, ceiling > 0 ? 100 * bw / ceiling : 0, ceiling / 1e9);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" class=\"axis\">dashed: copy ceiling</text>\n", label_w,
            height - 10);
    fputs("</svg>\n", f);
}

/* ---- per-suite tables ---------------------------------------------------------------- */

static void lines_pre(FILE *f, json_t *array, const char *cls) {
    if (!json_array_size(array))
        return;
    fprintf(f, "<pre class=\"%s\">", cls);
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v) {
        esc(f, json_string_value(v));
        fputc('\n', f);
    }
    fputs("</pre>", f);
}

static void suites_section(FILE *f, json_t *records) {
    size_t i, j;
    json_t *rec, *other;
    json_array_foreach(records, i, rec) {
        const char *suite = str(rec, "suite");
        int first = 1;
        for (j = 0; j < i && first; j++)
            first = strcmp(str(json_array_get(records, j), "suite"), suite) != 0;
        if (!first)
            continue;
        fprintf(f, "<h2 id=\"suite-%s\">Suite %s</h2>\n<table class=\"grid tests\"><tr><th>test</th><th>level</th>"
                   "<th>list</th><th>result</th><th>time</th><th>max err/bound</th><th>details</th></tr>\n",
                suite, suite);
        json_array_foreach(records, j, other) {
            if (strcmp(str(other, "suite"), suite))
                continue;
            const char *r = str(other, "result");
            fputs("<tr><td>", f);
            esc(f, str(other, "test"));
            fputs("</td><td>", f);
            esc(f, str(other, "level"));
            fprintf(f, "</td><td>%s</td><td class=\"res\" style=\"color:%s\">%s</td><td>%.2f s</td><td>",
                    json_is_true(json_object_get(other, "mustpass")) ? "must-pass" : "optional", result_color(r), r,
                    json_number_value(json_object_get(other, "seconds")));
            int present;
            const double mr = metric(other, "max_ratio", &present);
            if (present)
                fprintf(f, "%.3g", mr);
            fputs("</td><td>", f);
            esc(f, str(other, "what"));
            if (*str(other, "reason")) {
                fputs("<div class=\"reason\">", f);
                esc(f, str(other, "reason"));
                fputs("</div>", f);
            }
            if (*str(other, "waiver")) {
                fputs("<div class=\"reason\">waived: ", f);
                esc(f, str(other, "waiver"));
                fputs(" (result without the waiver: ", f);
                esc(f, str(other, "original_result"));
                fputs(")</div>", f);
            }
            lines_pre(f, json_object_get(other, "detail"), "detail");
            lines_pre(f, json_object_get(other, "failures"), "failures");
            json_t *total = json_object_get(other, "failures_total");
            if (json_integer_value(total) > (json_int_t)json_array_size(json_object_get(other, "failures")))
                fprintf(f, "<div class=\"reason\">%lld failing cases in all; the first %zu are listed</div>",
                        (long long)json_integer_value(total), json_array_size(json_object_get(other, "failures")));
            if (*str(other, "output")) {
                fputs("<details><summary>output (tail)</summary><pre>", f);
                esc(f, str(other, "output"));
                fputs("</pre></details>", f);
            }
            fputs("</td></tr>\n", f);
        }
        fputs("</table>\n", f);
    }
}

static const char css[] =
    "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2328;max-width:1200px}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #d0d7de}"
    ".verdict{padding:2px 10px;border-radius:6px;color:#fff;font-size:15px;vertical-align:middle}"
    ".verdict.ok{background:#1a7f37}.verdict.bad{background:#cf222e}"
    "table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 8px;text-align:left;vertical-align:top}"
    "table.grid th,table.grid td{border:1px solid #d0d7de}table.kv th{color:#57606a;font-weight:normal}"
    "tr.total td{font-weight:bold}td.res{font-weight:bold}"
    "pre{margin:4px 0;white-space:pre-wrap;font-size:12px}pre.failures{color:#cf222e}pre.detail{color:#57606a}"
    ".reason{color:#57606a;font-size:12px}.caps li{font-family:monospace;font-size:12px}"
    "svg.chart{display:block;margin:8px 0}svg .label,svg .axis,svg .value{font:11px sans-serif;fill:#1f2328}"
    "svg .axis{fill:#57606a}svg .tick{stroke:#d0d7de}svg .bound{stroke:#cf222e;stroke-dasharray:4 3}";

kvfp8_status kvfp8_conform_write_html(const char *path, json_t *header, json_t *records) {
    FILE *f = fopen(path, "w");
    if (!f)
        return kvfp8_fail(KVFP8_ERR_IO, "%s: %s", path, strerror(errno));
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kvfp8 conformance: ", f);
    esc(f, str(header, "backend"));
    fprintf(f, "</title><style>%s</style></head><body>\n", css);
    header_section(f, header, records);
    summary_section(f, records);
    capabilities_section(f, header);
    ratio_chart(f, records);
    histogram_chart(f, records);
    bandwidth_chart(f, records);
    suites_section(f, records);
    fputs("<p class=\"reason\">Written by kvfp8 conform. Levels: EXACT (bit for bit with the reference), BOUNDED "
          "(within kvfp8_attention_error_bound, float32 accumulation), PROPERTY (relations between the backend's "
          "own outputs), API (the contract around the numbers), PERF (informative).</p>\n</body></html>\n",
          f);
    if (fclose(f) != 0)
        return kvfp8_fail(KVFP8_ERR_IO, "%s: %s", path, strerror(errno));
    return KVFP8_OK;
}
