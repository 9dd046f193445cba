using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Replicator.Core.Configuration;
using Replicator.Core.Hosting;
using Replicator.Core.Sql;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Deploy;

/// <summary>
/// deploy/: the dashboard and the alert rules name only metrics Replicator exports, every alert
/// links to a runbook section that exists, and every kustomize overlay renders into pods that load
/// their config and run the slot's reader once. (scripts/check-deploy.sh adds yamllint and the
/// promtool rule checks and unit tests.)
/// </summary>
public partial class DeployTests(PostgresFixture postgres) : IClassFixture<PostgresFixture>
{
    private static readonly string Root = Repository.Root;
    private static readonly string K8s = Path.Combine(Root, "deploy", "k8s");
    private static readonly string RulesFile = Path.Combine(K8s, "monitoring", "prometheus-rules.yaml");
    private static readonly string DashboardFile = Path.Combine(K8s, "monitoring", "grafana-dashboard.json");
    private static readonly string[] Overlays = ["embedded", "kafka", "azure", "periodic-sync"];

    [Fact]
    public async Task Every_metric_name_used_by_the_dashboard_and_the_alert_rules_exists_on_the_metrics_page_of_a_running_replicator()
    {
        var page = await ScrapeMetricsPageAsync();
        var expressions = DashboardExpressions().Concat(await RuleExpressionsAsync()).ToList();
        var names = expressions.SelectMany(MetricNames).ToHashSet(StringComparer.Ordinal);

        var missing = MissingFromPage(names, page);

        Assert.True(missing.Count == 0,
            $"metric names used in deploy/k8s/monitoring but not exported by Replicator (fix the name, or add the instrument to src/Core/Metrics/ReplicatorMetrics.cs): {string.Join(", ", missing)}");
        // The check above means something only when the extraction found the names.
        Assert.True(names.Count >= 20, $"only {names.Count} metric names extracted: {string.Join(", ", names)}");
        Assert.Contains("replicator_apply_batch_seconds_bucket", names);
        Assert.Contains("replicator_slot_retained_wal_bytes", names);
        Assert.Contains("replicator_verify_last_clean_pass_timestamp_seconds", names);
    }

    [Fact]
    public async Task A_misspelt_metric_name_in_an_expression_is_reported_missing()
    {
        var page = await ScrapeMetricsPageAsync();
        const string Misspelt = """sum by (namespace, le) (rate(replicator_apply_batch_secnds_bucket{namespace=~"$namespace", kind!="up"}[$__rate_interval])) > on (namespace) group_left time() - replicator_verify_last_clean_pass_timestamp_secondz offset 5m""";

        var names = MetricNames(Misspelt).ToHashSet(StringComparer.Ordinal);
        var missing = MissingFromPage(names, page);

        string[] expected = ["replicator_apply_batch_secnds_bucket", "replicator_verify_last_clean_pass_timestamp_secondz"];
        Assert.Equal(expected, names.Order(StringComparer.Ordinal));
        Assert.Equal(expected, missing);
        // A histogram suffix on a name that is not a histogram is missing too.
        Assert.Equal(new[] { "replicator_apply_lag_seconds_bucket" }, MissingFromPage(["replicator_apply_lag_seconds_bucket", "replicator_apply_batch_seconds_count", "up"], page));
    }

    [Fact]
    public void The_metric_name_extractor_ignores_functions_keywords_labels_strings_durations_and_grafana_variables()
    {
        var names = MetricNames("""
            histogram_quantile(0.99, sum without (instance, pod) (rate(replicator_apply_batch_seconds_bucket{job="replicator", table=~"public.orders|x"}[$__rate_interval])))
            and ignoring (le) absent(up{job="replicator"}) unless on (namespace, pod) replicator_build_info or vector(1) * 1e3 + 1.5 - inf
            """).ToList();

        Assert.Equal(new[] { "replicator_apply_batch_seconds_bucket", "up", "replicator_build_info" }, names);
    }

    [Fact]
    public async Task Every_alert_has_a_severity_a_summary_a_description_and_a_runbook_link_into_operations_md_that_exists()
    {
        var rules = await YamlToJsonAsync(await File.ReadAllTextAsync(RulesFile));
        var anchors = MarkdownAnchors(await File.ReadAllTextAsync(Path.Combine(Root, "docs", "operations.md")));
        var alerts = rules["groups"]!.AsArray().SelectMany(g => g!["rules"]!.AsArray()).Where(r => r!["alert"] is not null).ToList();

        Assert.True(alerts.Count >= 8, $"only {alerts.Count} alerts");
        foreach (var alert in alerts)
        {
            var name = (string)alert!["alert"]!;
            Assert.True(alert["labels"]?["severity"] is JsonValue severity && (string)severity! is "warning" or "critical", $"{name}: severity must be warning or critical");
            Assert.False(string.IsNullOrWhiteSpace((string?)alert["annotations"]?["summary"]), $"{name}: no summary");
            Assert.False(string.IsNullOrWhiteSpace((string?)alert["annotations"]?["description"]), $"{name}: no description");
            var runbook = (string?)alert["annotations"]?["runbook_url"] ?? "";
            var match = RunbookLink().Match(runbook);
            Assert.True(match.Success, $"{name}: runbook_url '{runbook}' does not point at docs/operations.md#<anchor>");
            Assert.True(anchors.Contains(match.Groups[1].Value), $"{name}: docs/operations.md has no section with anchor #{match.Groups[1].Value} (add a heading '{name}')");
        }
    }

    [Fact]
    public async Task Every_link_into_operations_md_from_deploy_and_from_the_page_itself_reaches_a_heading_or_a_file()
    {
        var docs = Path.Combine(Root, "docs");
        var page = await File.ReadAllTextAsync(Path.Combine(docs, "operations.md"));
        var anchors = MarkdownAnchors(page);
        var broken = new List<string>();

        foreach (Match link in MarkdownLink().Matches(page))
        {
            var target = link.Groups[1].Value;
            if (target.StartsWith('#'))
            {
                if (!anchors.Contains(target[1..]))
                    broken.Add($"operations.md: {target}");
            }
            else if (!target.Contains("://", StringComparison.Ordinal) && !Path.Exists(Path.Combine(docs, target.Split('#')[0])))
            {
                broken.Add($"operations.md: {target} (no such file)");
            }
        }

        var fromDeploy = 0;
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Root, "deploy"), "*", SearchOption.AllDirectories))
        {
            foreach (Match link in OperationsLink().Matches(await File.ReadAllTextAsync(file)))
            {
                fromDeploy++;
                if (!anchors.Contains(link.Groups[1].Value))
                    broken.Add($"{Path.GetRelativePath(Root, file)}: docs/operations.md#{link.Groups[1].Value}");
            }
        }

        Assert.True(broken.Count == 0, "links to missing sections or files:\n" + string.Join('\n', broken));
        Assert.True(fromDeploy >= 20, $"only {fromDeploy} links from deploy/ found");
    }

    [Fact]
    public void Markdown_anchors_follow_githubs_heading_rules()
    {
        var anchors = MarkdownAnchors("# Operations\n## Cutover runbook (planned)\n### ReplicatorLagSecondsHigh\n```\n# not a heading\n```\n## Install: the image & `kubectl`\n");

        Assert.Equal(new[] { "cutover-runbook-planned", "install-the-image--kubectl", "operations", "replicatorlagsecondshigh" }, anchors.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task The_PrometheusRule_carries_exactly_the_groups_of_the_plain_rules_file()
    {
        var plain = await YamlToJsonAsync(await File.ReadAllTextAsync(RulesFile));
        var crd = await YamlToJsonAsync(await File.ReadAllTextAsync(Path.Combine(K8s, "monitoring", "prometheusrule.yaml")));

        Assert.Equal("PrometheusRule", (string?)crd["kind"]);
        Assert.True(JsonNode.DeepEquals(plain, crd["spec"]), "prometheusrule.yaml differs from prometheus-rules.yaml: run scripts/check-deploy.sh --write");
    }

    [Theory]
    [InlineData("embedded")]
    [InlineData("kafka")]
    [InlineData("azure")]
    [InlineData("periodic-sync")]
    public async Task Every_pod_of_the_overlay_loads_its_config_file_and_serves_metrics_on_all_interfaces(string overlay)
    {
        var objects = await RenderAsync(overlay);
        var config = objects.Single(o => (string?)o["kind"] == "ConfigMap" && ((string?)o["metadata"]!["name"])!.StartsWith("replicator-config", StringComparison.Ordinal));
        var configName = (string)config["metadata"]!["name"]!;
        var pods = PodSpecs(objects).ToList();
        Assert.NotEmpty(pods);

        foreach (var (owner, pod) in pods)
        {
            var container = pod["containers"]!.AsArray().Single()!;
            var args = container["args"]!.AsArray().Select(a => (string)a!).ToList();
            Assert.Equal("/etc/replicator/config.json", args[args.IndexOf("--config") + 1]);
            var mount = container["volumeMounts"]!.AsArray().Single(m => (string?)m!["mountPath"] == "/etc/replicator/config.json")!;
            var volume = pod["volumes"]!.AsArray().Single(v => (string?)v!["name"] == (string?)mount["name"])!;
            Assert.Equal(configName, (string?)volume["configMap"]?["name"]);
            Assert.True((bool?)pod["securityContext"]?["runAsNonRoot"] == true, $"{owner}: not runAsNonRoot");

            // The pod's view of the configuration: the file plus its REPLICATOR_* environment.
            var file = Path.Combine(Path.GetTempPath(), $"replicator-deploy-{Guid.NewGuid():N}.json");
            await File.WriteAllTextAsync(file, (string)config["data"]!["config.json"]!);
            try
            {
                var options = ConfigLoader.Load(file, environment: ContainerEnvironment(container));
                Assert.Equal("0.0.0.0:9187", options.Metrics.Listen);
                Assert.True(options.Metrics.Enabled, $"{owner}: metrics disabled");
                ConnectionInfo.Parse(options.Source.ConnectionString!, "Source:ConnectionString");
                ConnectionInfo.Parse(options.Target.ConnectionString!, "Target:ConnectionString");
                Assert.Equal(overlay == "kafka" ? "kafka" : "embedded", options.Buffer.Kind);
            }
            finally
            {
                File.Delete(file);
            }
        }
    }

    [Theory]
    [InlineData("embedded")]
    [InlineData("kafka")]
    [InlineData("azure")]
    public async Task Long_running_pods_run_one_replica_with_the_Recreate_strategy_and_probe_healthz_and_readyz(string overlay)
    {
        var deployments = (await RenderAsync(overlay)).Where(o => (string?)o["kind"] == "Deployment").ToList();
        Assert.NotEmpty(deployments);

        foreach (var deployment in deployments)
        {
            var name = (string)deployment["metadata"]!["name"]!;
            // A rolling update would start the new pod while the old one still holds the slot.
            Assert.Equal(1, (int?)deployment["spec"]!["replicas"]);
            Assert.Equal("Recreate", (string?)deployment["spec"]!["strategy"]?["type"]);
            var container = deployment["spec"]!["template"]!["spec"]!["containers"]!.AsArray().Single()!;
            Assert.Equal("/healthz", (string?)container["livenessProbe"]?["httpGet"]?["path"]);
            Assert.Equal("/readyz", (string?)container["readinessProbe"]?["httpGet"]?["path"]);
            var port = container["ports"]!.AsArray().Single(p => (string?)p!["name"] == (string?)container["livenessProbe"]!["httpGet"]!["port"])!;
            Assert.Equal(9187, (int?)port["containerPort"]);
            Assert.True(container["resources"]?["requests"]?["memory"] is not null && container["resources"]?["limits"]?["memory"] is not null, $"{name}: no memory request and limit");
        }

        if (overlay == "kafka")
            Assert.Equal(["replicator-apply", "replicator-capture", "replicator-verify"], deployments.Select(d => (string)d["metadata"]!["name"]!).Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("embedded")]
    [InlineData("kafka")]
    [InlineData("azure")]
    [InlineData("periodic-sync")]
    public async Task No_overlay_contains_a_Secret_and_every_secret_reference_names_the_credentials_secrets(string overlay)
    {
        var objects = await RenderAsync(overlay);

        Assert.DoesNotContain(objects, o => (string?)o["kind"] == "Secret");
        var referenced = objects.SelectMany(SecretReferences).ToHashSet(StringComparer.Ordinal);
        Assert.Contains("replicator-credentials", referenced);
        Assert.Subset(new HashSet<string>(["replicator-credentials", "replicator-azure-target"], StringComparer.Ordinal), referenced);
        Assert.DoesNotContain("CHANGE-ME", string.Join('\n', objects.Select(o => o.ToJsonString())), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_azure_overlay_verifies_the_target_certificate_and_host_name_and_takes_the_password_from_a_secret()
    {
        var objects = await RenderAsync("azure");
        var config = (string)objects.Single(o => (string?)o["kind"] == "ConfigMap" && ((string?)o["metadata"]!["name"])!.StartsWith("replicator-config", StringComparison.Ordinal))["data"]!["config.json"]!;
        var run = objects.Single(o => (string?)o["kind"] == "Deployment");
        var container = run["spec"]!["template"]!["spec"]!["containers"]!.AsArray().Single()!;

        var target = JsonNode.Parse(config)!["Target"]!;
        var connection = ConnectionInfo.Parse((string)target["ConnectionString"]!, "Target:ConnectionString").ToNpgsqlConnectionString();
        Assert.Contains("SSL Mode=VerifyFull", connection, StringComparison.Ordinal);
        Assert.Contains("Root Certificate=/etc/replicator/azure-ca/root.crt", connection, StringComparison.Ordinal);
        Assert.Contains(container["volumeMounts"]!.AsArray(), m => (string?)m!["mountPath"] == "/etc/replicator/azure-ca");
        var password = container["env"]!.AsArray().Single(e => (string?)e!["name"] == "REPLICATOR_TARGET__PASSWORD")!;
        Assert.Equal("replicator-azure-target", (string?)password["valueFrom"]?["secretKeyRef"]?["name"]);
        Assert.Null(target["Password"]);
    }

    [Fact]
    public async Task The_periodic_sync_overlay_runs_sync_from_a_CronJob_that_never_overlaps_itself()
    {
        var objects = await RenderAsync("periodic-sync");
        var cron = objects.Single(o => (string?)o["kind"] == "CronJob");

        Assert.Equal("Forbid", (string?)cron["spec"]!["concurrencyPolicy"]);
        var container = cron["spec"]!["jobTemplate"]!["spec"]!["template"]!["spec"]!["containers"]!.AsArray().Single()!;
        Assert.Equal("sync", (string?)container["args"]![0]);
        Assert.Contains(objects, o => (string?)o["kind"] == "Job" && (string?)o["metadata"]!["name"] == "replicator-snapshot");
        Assert.DoesNotContain(objects, o => (string?)o["kind"] is "Deployment" or "ServiceMonitor" or "PrometheusRule");
    }

    /// <summary>
    /// What the manifests rely on for "one capture per slot" (replicas: 1, strategy: Recreate,
    /// concurrencyPolicy: Forbid, and no lease): PostgreSQL itself refuses a second reader of an
    /// active slot with SQLSTATE 55006, naming the slot, and Replicator classifies that as
    /// transient (the second process waits and retries; it never streams alongside the first).
    /// </summary>
    [Fact]
    public async Task A_second_reader_of_an_active_slot_is_refused_with_object_in_use_naming_the_slot()
    {
        await using var db = await postgres.CreateDatabasesAsync("deploy_slot");
        var slot = $"deploy_{Guid.NewGuid():N}";
        await Sql.ExecAsync(db.SourceConnectionString, $"CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION {slot} FOR ALL TABLES");
        await Sql.ExecAsync(db.SourceConnectionString, $"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')");
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));

        await using var first = new LogicalReplicationConnection(db.SourceConnectionString);
        await first.Open(cts.Token);
        await using var firstStream = first.StartReplication(new PgOutputReplicationSlot(slot), new PgOutputReplicationOptions(slot, PgOutputProtocolVersion.V1), cts.Token).GetAsyncEnumerator(cts.Token);
        var firstReading = firstStream.MoveNextAsync().AsTask();
        while (await Sql.ScalarAsync<bool>(db.SourceConnectionString, $"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'") != true)
            await Task.Delay(50, cts.Token);

        await using var second = new LogicalReplicationConnection(db.SourceConnectionString);
        await second.Open(cts.Token);
        var refused = await Assert.ThrowsAsync<PostgresException>(async () =>
        {
            await foreach (var _ in second.StartReplication(new PgOutputReplicationSlot(slot), new PgOutputReplicationOptions(slot, PgOutputProtocolVersion.V1), cts.Token))
                break;
        });

        Assert.Equal(PostgresErrorCodes.ObjectInUse, refused.SqlState);
        Assert.Contains(slot, refused.MessageText, StringComparison.Ordinal);
        Assert.True(PostgresErrors.IsTransient(refused), "a second capture must wait and retry, not fail for good");
        Assert.False(firstReading.IsFaulted, "the first reader keeps streaming");
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => firstReading);
    }

    // ---- metric names ----

    private static async Task<string> ScrapeMetricsPageAsync()
    {
        await using var server = await MonitoringServer.StartAsync("127.0.0.1:0", new HealthState(), CancellationToken.None);
        using var http = new HttpClient { BaseAddress = server.Address };
        return await http.GetStringAsync(new Uri("/metrics", UriKind.Relative));
    }

    private static readonly HashSet<string> PromQlWords = new(StringComparer.Ordinal)
    {
        "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
    };

    /// <summary>
    /// Metric names in a PromQL expression, in order of appearance. Three kinds of text are
    /// dropped first: (a) string literals and label matchers <c>{…}</c>, (b) range and subquery
    /// brackets <c>[…]</c>, (c) label lists of <c>by/without/on/ignoring/group_left/group_right</c>.
    /// What remains is a name unless a <c>(</c> follows it (a function or aggregation), it is a
    /// PromQL keyword, a number, or a Grafana variable (<c>$namespace</c>).
    /// </summary>
    internal static IEnumerable<string> MetricNames(string expression)
    {
        var text = StringLiteral().Replace(expression, " ");
        text = Braces().Replace(text, " ");
        text = Brackets().Replace(text, " ");
        text = LabelList().Replace(text, " ");
        text = GrafanaVariable().Replace(text, " ");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match m in Identifier().Matches(text))
        {
            var name = m.Groups[1].Value;
            if (m.Groups[2].Success || PromQlWords.Contains(name.ToLowerInvariant()) || !seen.Add(name))
                continue;
            yield return name;
        }
    }

    /// <summary>
    /// The names the page does not define with a <c># TYPE</c> line. A <c>_bucket</c>, <c>_sum</c>
    /// or <c>_count</c> name counts only when its base name is a histogram; <c>up</c> is
    /// Prometheus' own.
    /// </summary>
    internal static List<string> MissingFromPage(IEnumerable<string> names, string page)
    {
        var types = TypeLine().Matches(page).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value, StringComparer.Ordinal);
        return names.Where(name =>
        {
            if (name == "up" || types.ContainsKey(name))
                return false;
            var suffix = HistogramSuffix().Match(name);
            return !(suffix.Success && types.TryGetValue(suffix.Groups[1].Value, out var type) && type == "histogram");
        }).Order(StringComparer.Ordinal).ToList();
    }

    private static IEnumerable<string> DashboardExpressions()
    {
        var dashboard = JsonNode.Parse(File.ReadAllText(DashboardFile))!;
        var expressions = new List<string>();
        void Walk(JsonArray? panels)
        {
            foreach (var panel in panels ?? [])
            {
                Walk(panel!["panels"]?.AsArray());
                foreach (var target in panel["targets"]?.AsArray() ?? [])
                    expressions.Add((string)target!["expr"]!);
            }
        }

        Walk(dashboard["panels"]!.AsArray());
        foreach (var variable in dashboard["templating"]?["list"]?.AsArray() ?? [])
        {
            if (variable!["definition"] is JsonValue definition && LabelValues().Match((string)definition!) is { Success: true } m)
                expressions.Add(m.Groups[1].Value);
        }

        Assert.True(expressions.Count >= 20, $"only {expressions.Count} expressions in the dashboard");
        return expressions;
    }

    private static async Task<IEnumerable<string>> RuleExpressionsAsync()
    {
        var rules = await YamlToJsonAsync(await File.ReadAllTextAsync(RulesFile));
        return rules["groups"]!.AsArray().SelectMany(g => g!["rules"]!.AsArray()).Select(r => (string)r!["expr"]!).ToList();
    }

    // ---- markdown ----

    /// <summary>GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens; fenced code skipped.</summary>
    internal static HashSet<string> MarkdownAnchors(string markdown)
    {
        var anchors = new HashSet<string>(StringComparer.Ordinal);
        var inFence = false;
        foreach (var line in markdown.Split('\n'))
        {
            if (line.TrimStart().StartsWith("```", StringComparison.Ordinal))
            {
                inFence = !inFence;
                continue;
            }

            var heading = Heading().Match(line);
            if (inFence || !heading.Success)
                continue;
            var slug = AnchorDrop().Replace(heading.Groups[1].Value.Trim().ToLowerInvariant(), "").Replace(' ', '-');
            var unique = slug;
            for (var i = 1; !anchors.Add(unique); i++)
                unique = $"{slug}-{i}";
        }

        return anchors;
    }

    // ---- kustomize ----

    private static readonly Dictionary<string, Task<List<JsonNode>>> Rendered = new(StringComparer.Ordinal);

    private static Task<List<JsonNode>> RenderAsync(string overlay)
    {
        lock (Rendered)
        {
            if (!Rendered.TryGetValue(overlay, out var task))
                Rendered[overlay] = task = RenderUncachedAsync(overlay);
            return task;
        }
    }

    private static async Task<List<JsonNode>> RenderUncachedAsync(string overlay)
    {
        Assert.Contains(overlay, Overlays);
        var kubectl = File.Exists("/usr/bin/kubectl") ? "/usr/bin/kubectl" : "kubectl";
        var result = await ProcessRunner.RunAsync(kubectl, ["kustomize", Path.Combine(K8s, "overlays", overlay)]);
        Assert.True(result.ExitCode == 0, $"kubectl kustomize deploy/k8s/overlays/{overlay} failed:\n{result.Output}");
        var documents = await YamlToJsonAsync(result.Stdout, all: true);
        return documents.AsArray().Where(d => d is not null).Select(d => d!).ToList();
    }

    private static IEnumerable<(string Owner, JsonNode Pod)> PodSpecs(IEnumerable<JsonNode> objects)
    {
        foreach (var o in objects)
        {
            var owner = $"{o["kind"]}/{o["metadata"]!["name"]}";
            switch ((string?)o["kind"])
            {
                case "Deployment" or "Job":
                    yield return (owner, o["spec"]!["template"]!["spec"]!);
                    break;
                case "CronJob":
                    yield return (owner, o["spec"]!["jobTemplate"]!["spec"]!["template"]!["spec"]!);
                    break;
            }
        }
    }

    /// <summary>Names of Secrets a manifest refers to: secret volumes and secretKeyRef environment variables.</summary>
    private static IEnumerable<string> SecretReferences(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                if (o["secretName"] is JsonValue volume)
                    yield return (string)volume!;
                if (o["secretKeyRef"]?["name"] is JsonValue key)
                    yield return (string)key!;
                foreach (var (_, child) in o)
                {
                    foreach (var name in SecretReferences(child))
                        yield return name;
                }

                break;
            case JsonArray a:
                foreach (var child in a)
                {
                    foreach (var name in SecretReferences(child))
                        yield return name;
                }

                break;
        }
    }

    private static Dictionary<string, string?> ContainerEnvironment(JsonNode container)
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var variable in container["env"]?.AsArray() ?? [])
        {
            var reference = variable!["valueFrom"]?["secretKeyRef"];
            env[(string)variable["name"]!] = reference is null ? (string?)variable["value"] : $"from-secret-{reference["name"]}-{reference["key"]}";
        }

        return env;
    }

    /// <summary>YAML to JSON through PyYAML (installed with yamllint), so the test needs no YAML package.</summary>
    private static async Task<JsonNode> YamlToJsonAsync(string yaml, bool all = false)
    {
        var script = all
            ? "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)"
            : "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)";
        var result = await ProcessRunner.RunAsync("python3", ["-c", script], stdin: yaml);
        Assert.True(result.ExitCode == 0, $"python3 with PyYAML is needed (apt-get install yamllint brings it): {result.Stderr}");
        return JsonNode.Parse(result.Stdout)!;
    }

    [GeneratedRegex("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")]
    private static partial Regex StringLiteral();

    [GeneratedRegex(@"\{[^{}]*\}")]
    private static partial Regex Braces();

    [GeneratedRegex(@"\[[^\[\]]*\]")]
    private static partial Regex Brackets();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", RegexOptions.IgnoreCase)]
    private static partial Regex LabelList();

    [GeneratedRegex(@"\$\{?\w+\}?")]
    private static partial Regex GrafanaVariable();

    [GeneratedRegex(@"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")]
    private static partial Regex Identifier();

    [GeneratedRegex(@"(?m)^# TYPE (\S+) (\S+)$")]
    private static partial Regex TypeLine();

    [GeneratedRegex("^(.+)_(?:bucket|sum|count)$")]
    private static partial Regex HistogramSuffix();

    [GeneratedRegex(@"^label_values\((\w+)\s*,")]
    private static partial Regex LabelValues();

    [GeneratedRegex(@"^docs/operations\.md#([a-z0-9_-]+)$")]
    private static partial Regex RunbookLink();

    [GeneratedRegex(@"\]\(([^)\s]+)\)")]
    private static partial Regex MarkdownLink();

    [GeneratedRegex(@"docs/operations\.md#([a-z0-9_-]+)")]
    private static partial Regex OperationsLink();

    [GeneratedRegex(@"^#{1,6}\s+(.+?)\s*#*\s*$")]
    private static partial Regex Heading();

    [GeneratedRegex(@"[^\p{L}\p{Nd}\s_-]")]
    private static partial Regex AnchorDrop();

}
