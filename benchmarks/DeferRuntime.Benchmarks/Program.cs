using BenchmarkDotNet.Running;
using DeferRuntime.Benchmarks.Latency;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// <c>dotnet run -c Release --project benchmarks/DeferRuntime.Benchmarks -- [BenchmarkDotNet args]</c>, or
/// <c>-- latency [options]</c> for the one-way latency percentiles (see <see cref="LatencyMode"/>), or
/// <c>-- throughput [options]</c> for the workqueue throughput rows measured in alternating slices with their
/// peer (see <see cref="Throughput.InterleavedThroughputMode"/>), or
/// <c>-- storm [options]</c> for interrupt-storm throughput with every event accounted (see <see cref="Storm.StormMode"/>).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "latency")
        {
            return LatencyMode.Run(args.AsSpan(1));
        }
        if (args.Length > 0 && args[0] == "throughput")
        {
            return Throughput.InterleavedThroughputMode.Run(args.AsSpan(1));
        }
        if (args.Length > 0 && args[0] == "storm")
        {
            return Storm.StormMode.Run(args.AsSpan(1));
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
