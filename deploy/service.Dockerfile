# One image per service: docker build -f deploy/service.Dockerfile --build-arg SERVICE=Incidents .
# (SERVICE is the project's folder under services/: Incidents, Hotline, Exchanges, Pullbacks, Compliance.)
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
ARG SERVICE
WORKDIR /src
COPY . .
RUN dotnet publish services/${SERVICE}/Verification.${SERVICE}/Verification.${SERVICE}.csproj -c Release -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
ARG SERVICE
ENV SERVICE_DLL=Verification.${SERVICE}.dll ASPNETCORE_URLS=http://+:8080
WORKDIR /app
COPY --from=build /app .
USER app
EXPOSE 8080
ENTRYPOINT ["sh", "-c", "exec dotnet \"$SERVICE_DLL\""]
