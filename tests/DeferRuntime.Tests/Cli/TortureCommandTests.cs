using System.Text.Json;
using DeferRuntime.Cli;

namespace DeferRuntime.Tests.Cli;

/// <summary>
/// deferrt torture, in process at small sizes: exit 0 when every check holds, 1 when lock_busted is
/// added (it must be caught: that proves the checker), 2 on a bad command line; the JSON report agrees
/// with the exit code. Every verdict is a count (exclusion violations, lost events), never a time.
/// </summary>
[Collection(RunsAlone.Name)]
public sealed class TortureCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("deferrt-torture-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (int Exit, string Output, JsonElement Json) Run(params string[] args)
    {
        string json = Path.Combine(_dir, $"torture-{Guid.NewGuid():N}.json");
        var output = new StringWriter();
        int exit = CliApp.Run(["torture", "--cpus", "2", "--duration", "0.2", "--stutter-ms", "50", "--shuffle-ms", "20", .. args, "--json", json], output);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        return (exit, output.ToString(), doc.RootElement.Clone());
    }

    [Fact]
    public void Every_suite_passes_and_exits_0()
    {
        var (exit, output, json) = Run("--types", "spin_lock,mutex_lock", "--fault-every", "50");
        Assert.True(exit == 0, output);
        Assert.Contains("End of run: SUCCESS", output, StringComparison.Ordinal);
        Assert.DoesNotContain("!!!", output, StringComparison.Ordinal);
        Assert.True(json.GetProperty("passed").GetBoolean());
        foreach (string test in new[] { "spin_lock", "mutex_lock", "tasklet", "workqueue", "percpu", "shutdown" })
        {
            Assert.Contains($"{test}: starting", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void The_busted_lock_is_reported_failing_and_exits_1()
    {
        var (exit, output, json) = Run("--types", "spin_lock", "--suites", "locks", "--busted");
        Assert.Equal(1, exit);
        Assert.Contains("lock_busted-torture", output, StringComparison.Ordinal);
        Assert.Contains("!!!", output, StringComparison.Ordinal);
        Assert.Contains("End of run: FAILURE", output, StringComparison.Ordinal);
        Assert.False(json.GetProperty("passed").GetBoolean());
        Assert.Contains(json.GetProperty("failures").EnumerateArray(), f => f.GetString()!.Contains("lock_busted", StringComparison.Ordinal));
    }

    [Fact]
    public void Each_injected_fault_is_caught_by_the_mechanism_it_targets()
    {
        var (exit, output, _) = Run("--types", "spin_lock", "--suites", "locks", "--fault", "irq-none,self-raising-softirq,stuck-work");
        Assert.True(exit == 0, output);
        Assert.Contains("nobody cared", output, StringComparison.Ordinal);
        Assert.Contains("self-raising-softirq-torture: held: ksoftirqd/0 took over", output, StringComparison.Ordinal);
        Assert.Contains("BUG: workqueue lockup", output, StringComparison.Ordinal);
        foreach (string fault in new[] { "irq-none", "self-raising-softirq", "stuck-work" })
        {
            Assert.Contains($"{fault}-torture:--- End of test: SUCCESS", output, StringComparison.Ordinal);
        }
        Assert.DoesNotContain("!!!", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--fault", "no-such-fault")]
    [InlineData("--suites", "everything")]
    [InlineData("--types", "no_such_lock")]
    [InlineData("--duration", "0")]
    public void A_bad_command_line_exits_2_naming_the_rule(string option, string value)
    {
        var output = new StringWriter();
        int exit = CliApp.Run(["torture", option, value], output);
        Assert.Equal(2, exit);
        Assert.Contains("error:", output.ToString(), StringComparison.Ordinal);
    }
}
