using System.Diagnostics;
using System.Text.Json;

namespace DeferRuntime.Tests.Cli;

/// <summary>
/// <c>deferrt storm --duration 0</c> runs until Ctrl-C: the first SIGINT ends the storm, which drains and is
/// reported in full (JSON <c>"interrupted": true</c>, every event accounted), exit code 130. A child
/// process, since a signal goes to a whole process. Nothing is timed: the signal is sent once progress
/// shows, and the timeouts only catch a hang.
/// </summary>
public sealed class StormInterruptTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("deferrt-int-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Ctrl_c_ends_a_storm_that_runs_until_stopped_with_a_complete_report_and_exit_code_130()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return; // kill -INT: Unix only
        }
        string json = Path.Combine(_dir, "interrupted.json");
        string csv = Path.Combine(_dir, "interrupted.csv");
        string dll = Path.Combine(AppContext.BaseDirectory, "deferrt.dll");
        Assert.True(File.Exists(dll), $"no {dll}");
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { dll, "storm", "--duration", "0", "--warmup", "0", "--cpus", "2", "--rate", "500", "--priorities", "none", "--paths", "hardirq,tasklet,wq-bound,napi", "--json", json, "--csv", csv })
        {
            start.ArgumentList.Add(arg);
        }
        using var child = Process.Start(start)!;
        var stdout = new System.Text.StringBuilder();
        var stderr = new System.Text.StringBuilder();
        using var storming = new ManualResetEventSlim();
        child.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }
            lock (stdout)
            {
                stdout.AppendLine(e.Data);
            }
            if (e.Data.StartsWith("[storm]", StringComparison.Ordinal) && e.Data.Contains("generated", StringComparison.Ordinal) && !e.Data.Contains("generated 0,", StringComparison.Ordinal))
            {
                storming.Set();
            }
        };
        child.ErrorDataReceived += (_, e) =>
        {
            lock (stderr)
            {
                stderr.AppendLine(e.Data);
            }
        };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        try
        {
            Assert.True(storming.Wait(TimeSpan.FromSeconds(120)), $"no progress from the storm; stdout:\n{stdout}\nstderr:\n{stderr}");
            using (var kill = Process.Start("kill", [SigintIgnored() ? "-TERM" : "-INT", child.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                kill.WaitForExit();
                Assert.Equal(0, kill.ExitCode);
            }
            Assert.True(child.WaitForExit(TimeSpan.FromSeconds(120)), $"the storm did not end after SIGINT; stdout:\n{stdout}");
            child.WaitForExit(); // the output readers finish
        }
        finally
        {
            if (!child.HasExited)
            {
                child.Kill(entireProcessTree: true);
            }
        }

        string output;
        lock (stdout)
        {
            output = stdout.ToString();
        }
        Assert.True(child.ExitCode == 130, $"exit {child.ExitCode}; stdout:\n{output}\nstderr:\n{stderr}");
        Assert.Contains("PASS", output, StringComparison.Ordinal);
        Assert.Contains("interrupted", output, StringComparison.Ordinal);
        Assert.Contains("ending the storm", stderr.ToString(), StringComparison.Ordinal);

        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var root = doc.RootElement;
        Assert.True(root.GetProperty("interrupted").GetBoolean());
        Assert.Equal(130, root.GetProperty("exitCode").GetInt32());
        var run = root.GetProperty("runs")[0];
        Assert.True(run.GetProperty("interrupted").GetBoolean());
        Assert.True(run.GetProperty("passed").GetBoolean(), string.Join("; ", run.GetProperty("problems").EnumerateArray().Select(p => p.GetString())));
        var totals = run.GetProperty("totals");
        Assert.True(totals.GetProperty("generated").GetInt64() > 0);
        Assert.Equal(totals.GetProperty("generated").GetInt64(), totals.GetProperty("handled").GetInt64());
        Assert.Equal(0, totals.GetProperty("lost").GetInt64());
        foreach (var path in run.GetProperty("paths").EnumerateArray())
        {
            Assert.Equal(path.GetProperty("generated").GetInt64(), path.GetProperty("handled").GetInt64());
        }
        Assert.All(run.GetProperty("identities").EnumerateArray(), i => Assert.True(i.GetProperty("holds").GetBoolean(), i.GetProperty("name").GetString()));
        Assert.Equal(1 + 4, File.ReadAllLines(csv).Length);
    }

    /// <summary>
    /// A process started in the background of a shell without job control has SIGINT ignored, and its
    /// children inherit that (.NET then leaves SIGINT alone): there, SIGTERM, which takes the same path.
    /// </summary>
    private static bool SigintIgnored()
    {
        string? line = OperatingSystem.IsLinux() ? File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal)) : null;
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << 1)) != 0;
    }
}
