using DeferRuntime.Diagnostics;
using DeferRuntime.Timers;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Naming;

/// <summary>
/// Items created without a name are named after the method that was passed, as its author wrote it
/// (<c>Type.Method</c>), never a compiler-generated name (<c>&lt;Main&gt;b__0_17</c>).
/// </summary>
public class CallbackNameTests
{
    private static void StaticDrain(WorkStruct work)
    {
    }

    [Fact]
    public void A_static_method_group_reads_as_type_dot_method()
    {
        Assert.Equal("CallbackNameTests.StaticDrain", new WorkStruct(StaticDrain).Name);
    }

    [Fact]
    public void An_instance_method_group_reads_as_its_declaring_type_dot_method()
    {
        var ingest = new Ingest();
        Assert.Equal("Ingest.Drain", new WorkStruct(ingest.Drain).Name);
        Assert.Equal("Ingest.Drain", new DelayedWork(ingest.Drain).Name);
        Assert.Equal("Pool.Run", new WorkStruct(new Pool<int>().Run).Name); // generic arity dropped
    }

    [Fact]
    public void A_lambda_reads_as_the_method_it_is_written_in()
    {
        // Non-capturing: a method of the compiler's singleton class <>c.
        Assert.Equal("CallbackNameTests.A_lambda_reads_as_the_method_it_is_written_in (lambda)", new WorkStruct(_ => { }).Name);
    }

    [Fact]
    public void A_capturing_lambda_reads_as_the_method_it_is_written_in_not_its_display_class()
    {
        int runs = 0;
        Action<WorkStruct> func = _ => runs++;
        Assert.StartsWith("<>c__DisplayClass", func.Method.DeclaringType!.Name, StringComparison.Ordinal); // an instance method of a display class
        Assert.Equal("CallbackNameTests.A_capturing_lambda_reads_as_the_method_it_is_written_in_not_its_display_class (lambda)", new WorkStruct(func).Name);
        Assert.Equal(0, runs);
    }

    [Fact]
    public void A_local_function_reads_as_its_own_name()
    {
        int seen = 0;
        static void Reset(WorkStruct work)
        {
        }
        void Count(WorkStruct work) => seen++;
        Assert.Equal("CallbackNameTests.Reset", new WorkStruct(Reset).Name);
        Assert.Equal("CallbackNameTests.Count", new WorkStruct(Count).Name); // capturing: the method is on the outer class
        Assert.Equal(0, seen);
    }

    [Fact]
    public void A_lambda_in_a_constructor_reads_as_the_constructor()
    {
        Assert.Equal("Ingest.ctor (lambda)", new Ingest().Work.Name);
    }

    [Fact]
    public void Compiler_names_of_top_level_statements_read_as_the_program()
    {
        // What the compiler emits for lambdas and local functions in top-level statements (Program.<Main>$).
        Assert.Equal("Program (lambda)", CallbackName.Describe(typeof(Program), "<<Main>$>b__0_17"));
        Assert.Equal("Program.Poll", CallbackName.Describe(typeof(Program), "<<Main>$>g__Poll|0_3"));
        Assert.Equal("Program.Main (lambda)", CallbackName.Describe(typeof(Program), "<Main>b__0_17"));
        Assert.Equal("Program.Local", CallbackName.Describe(typeof(Program), "<Run>g__Local|3_0"));
        Assert.Equal("Drain", CallbackName.Describe(null, "Drain")); // a dynamic method has no type
    }

    [Fact]
    public void Lambdas_and_local_functions_of_real_top_level_statements_read_as_the_program()
    {
        const string Source = """
            using DeferRuntime.Workqueues;

            AppContext.SetData("callback-name-lambda", new WorkStruct(_ => { }).Name);
            AppContext.SetData("callback-name-local", new WorkStruct(Poll).Name);

            static void Poll(WorkStruct work) { }
            """;
        var image = Readme.SnippetCompiler.Compile(Source, web: false, "TopLevelNames", out var errors);
        Assert.True(image is not null, string.Join('\n', errors));
        var context = new System.Runtime.Loader.AssemblyLoadContext("top-level-names", isCollectible: true);
        try
        {
            var assembly = context.LoadFromStream(new MemoryStream(image));
            assembly.EntryPoint!.Invoke(null, [Array.Empty<string>()]);
        }
        finally
        {
            context.Unload();
        }
        Assert.Equal("Program (lambda)", AppContext.GetData("callback-name-lambda"));
        Assert.Equal("Program.Poll", AppContext.GetData("callback-name-local"));
    }

    [Fact]
    public void Explicit_names_win()
    {
        Assert.Equal("reset", new WorkStruct(StaticDrain, "reset").Name);
    }

    [Fact]
    public void Tasklets_and_timers_are_named_the_same_way()
    {
        using var runtime = TestRuntime.Boot(1);
        var ingest = new Ingest();
        Assert.Equal("Ingest.Tick", runtime.CreateTasklet(ingest.Tick).Name);
        Assert.Equal("CallbackNameTests.Tasklets_and_timers_are_named_the_same_way (lambda)", runtime.CreateTasklet(_ => { }).Name);
        Assert.Equal("Ingest.Expire", runtime.TimerSetup(ingest.Expire).Name);
        Assert.Equal("CallbackNameTests.Tasklets_and_timers_are_named_the_same_way (lambda)", runtime.TimerSetup(_ => { }).Name);
        Assert.Equal("Ingest.Sample", runtime.HrtimerSetup(ingest.Sample).Name);
        static HrtimerRestart Sample(Hrtimer timer) => HrtimerRestart.NoRestart;
        Assert.Equal("CallbackNameTests.Sample", runtime.HrtimerSetup(Sample).Name);
    }

    [Fact]
    public void No_default_name_has_angle_brackets()
    {
        var names = new List<string>
        {
            new WorkStruct(async _ => await Task.Yield()).Name,
            new WorkStruct(w => GC.KeepAlive(new WorkStruct(_ => { }))).Name,
            Nested(),
        };
        Assert.All(names, n => Assert.DoesNotContain('<', n));
        Assert.All(names, n => Assert.StartsWith("CallbackNameTests.", n, StringComparison.Ordinal));

        static string Nested()
        {
            Func<string> inner = () => new WorkStruct(_ => { }).Name;
            return inner();
        }
    }

    private sealed class Ingest
    {
        public Ingest() => Work = new WorkStruct(_ => Drain(null!));

        public WorkStruct Work { get; }

        private int _calls;

        public void Drain(WorkStruct work) => _calls++;

        public void Tick(DeferRuntime.Tasklets.Tasklet tasklet) => _calls++;

        public void Expire(TimerList timer) => _calls++;

        public HrtimerRestart Sample(Hrtimer timer) => _calls++ < 0 ? HrtimerRestart.Restart : HrtimerRestart.NoRestart;
    }

    private sealed class Pool<T>
    {
        private int _runs;

        public void Run(WorkStruct work) => _runs++;
    }

    /// <summary>Stands in for the class of top-level statements.</summary>
    private static class Program
    {
    }
}
