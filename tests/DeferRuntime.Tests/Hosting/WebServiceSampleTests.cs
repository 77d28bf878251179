using System.Net;
using System.Net.Http.Json;
using DeferRuntime.Samples.WebService;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace DeferRuntime.Tests.Hosting;

public sealed class WebServiceSampleTests
{
    private sealed record Stats(long Accepted, long Stored, long Batches, long TaskletRuns);

    [Fact]
    public async Task The_sample_answers_on_loopback_and_its_graceful_stop_stores_every_accepted_reading()
    {
        var app = IngestApp.Build(["--urls", "http://127.0.0.1:0"], o =>
        {
            o.CpuCount = 2;
            o.Priorities = PriorityPolicy.None;
        });
        await using (app)
        {
            await app.StartAsync();
            var address = new Uri(app.Urls.Single());
            Assert.Equal("127.0.0.1", address.Host);
            Assert.NotEqual(0, address.Port);

            const int Requests = 50;
            using (var client = new HttpClient { BaseAddress = address, Timeout = Wait.Ceiling })
            {
                for (int i = 0; i < Requests; i++)
                {
                    using var response = await client.PostAsync(new Uri($"/readings?device=d{i % 3}&value={i}.5", UriKind.Relative), null);
                    Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
                }
                var stats = await client.GetFromJsonAsync<Stats>(new Uri("/stats", UriKind.Relative));
                Assert.Equal(Requests, stats!.Accepted);
            }

            var pipeline = app.Services.GetRequiredService<IngestPipeline>();
            await app.StopAsync().WaitAsync(Wait.Ceiling);
            Assert.Equal(Requests, pipeline.Accepted);
            Assert.Equal(Requests, pipeline.Stored); // nothing accepted was lost: the drain ran every batch
            Assert.True(app.Services.GetRequiredService<Runtime>().IsShutDown);
        }
    }
}
